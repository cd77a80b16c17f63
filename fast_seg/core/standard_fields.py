"""Every string key and shared constant of fast_seg, defined once.

TFRecord keys follow DeepLab / TF Model Garden, so shards written by those
projects load unchanged.
"""

# The label of unlabelled (void) pixels in every converted dataset, the
# models' default ignore_label, and what predict.py writes for cropped rows.
IGNORE_LABEL = 255

class TfExampleFields:
  """Feature keys of a serialized tf.train.Example."""
  image_encoded = "image/encoded"
  image_filename = "image/filename"
  image_format = "image/format"
  height = "image/height"
  width = "image/width"
  channels = "image/channels"
  label_encoded = "image/segmentation/class/encoded"
  label_format = "image/segmentation/class/format"


class InputFields:
  """Keys of the example dicts produced by the input pipeline."""
  image = "image"  # float32 [H, W, 3] in 0..255 (batched: [N, H, W, 3])
  label = "label"  # int32 [H, W, 1], class ids or the ignore label
  filename = "filename"  # string
  original_size = "original_size"  # int32 [2]: height, width before padding


class PredictionFields:
  """Keys of SegmentationModel.predict / postprocess outputs."""
  logits = "logits"  # the main head
  labels = "labels"  # int32 [N, H, W] at input size
  probabilities = "probabilities"  # float32 [N, H, W, C] at input size


class LossFields:
  """Keys of the loss dict; per-head losses are named after their head."""
  total = "total_loss"
  regularization = "regularization_loss"


class DatasetInfoFields:
  """Keys of the dataset_info.json written beside a dataset's TFRecords."""
  file_name = "dataset_info.json"
  num_classes = "num_classes"
  ignore_label = "ignore_label"
  class_names = "class_names"
  palette = "palette"  # [[r, g, b], ...], one per class id
  num_examples = "num_examples"  # {split: count}
  class_pixel_frequency = "class_pixel_frequency"  # {split: [fraction per class]}
  file_patterns = "file_patterns"  # {split: glob relative to the info file}
  image_sizes = "image_sizes"  # {split: {"HxW": number of images}}
