r"""Reports what a set of segmentation TFRecords holds, before training on it.

    python -m fast_seg.data.inspect --input_pattern "data/camvid/val-*.tfrecord" \
        [--dataset_info data/camvid/dataset_info.json] \
        [--num_previews 8 --preview_dir previews/] [--output_json report.json]

Counts records per file, image sizes and formats, class pixel counts and
frequencies by class name, ignore pixels, label values outside the classes,
labels whose size differs from their image and records that do not decode.
Unlike the training reader, which stops at the first bad record, this reads
on and reports every problem, so one pass shows all that needs fixing.
"""

import io
import json
import os
import re

from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.data import tf_example
from fast_seg.utils import cli
from fast_seg.utils import visualization

_TF = standard_fields.TfExampleFields
_INFO = standard_fields.DatasetInfoFields

# The model protos' default; used when no dataset_info.json says otherwise.
# Problem records / file names listed per kind; the counts are always full.
MAX_LISTED = 20
MAX_EXAMPLE_FILENAMES = 5
# Label values a uint8 PNG can hold: the size of every histogram here.
_NUM_VALUES = 256


class _Problems:
  """A count and the first MAX_LISTED entries of one kind of problem."""

  def __init__(self):
    self.count = 0
    self.listed = []

  def add(self, entry):
    self.count += 1
    if len(self.listed) < MAX_LISTED:
      self.listed.append(entry)


def _size_text(shape):
  return f"{shape[0]}x{shape[1]}"


def _label_mode(png_bytes):
  """PIL mode of a label PNG from its header ('L', 'P', 'RGB', ...)."""
  try:
    return Image.open(io.BytesIO(png_bytes)).mode
  except OSError:
    return "unreadable"


def _first_line(error):
  """The readable part of an error (TF op errors carry graph dumps)."""
  message = error.message if isinstance(error, tf.errors.OpError) else str(error)
  lines = message.strip().splitlines()
  return lines[0] if lines else type(error).__name__


def _decode(record):
  """Parses and decodes one record as the training reader does.

  Returns:
    (fields dict of str, image uint8 [H, W, 3], label uint8 [H', W'], label
    PNG mode). Raises ValueError or tf.errors.OpError on a bad record.
  """
  fields, image, label = tf_example.decode_example(record)
  return fields, image, label[..., 0], _label_mode(fields[_TF.label_encoded])


def _preview(image, label, palette, ignore_label, class_names=None):
  """image | label colours blended over it, titled, with a legend of the
  classes present. Ignore pixels are left uncoloured, as in every overlay
  (visualization.overlay), so they never read as a black class."""
  blended = visualization.overlay(image, label, palette).numpy()
  entries = visualization.legend_entries([label[label != ignore_label]],
                                         palette, class_names)
  if (label == ignore_label).any():
    entries.append((f"ignore ({ignore_label}): not coloured", (255, 255, 255)))
  return visualization.annotate(np.concatenate([image, blended], axis=1),
                                ["image", "labels"], entries)


def _preview_name(index, filename):
  stem = os.path.splitext(os.path.basename(filename))[0]
  stem = re.sub(r"[^\w.-]", "_", stem) or "image"
  return f"{index:04d}_{stem}.png"


def _class_table(info, value_counts, ignore_label):
  """(num_classes, names, inferred?) from `info` or the label values seen."""
  if info is not None:
    return info[_INFO.num_classes], list(info[_INFO.class_names]), False
  present = np.flatnonzero(value_counts)
  present = present[present != ignore_label]
  num_classes = int(present.max()) + 1 if present.size else 1
  return num_classes, [f"class_{i}" for i in range(num_classes)], True


def inspect_records(pattern, info=None, num_previews=0, preview_dir=None,
                    max_examples=None):
  """Reads the TFRecords of `pattern` and returns the report as a dict.

  Args:
    pattern: a TFRecord glob, or several separated by commas.
    info: a dataset info dict, a path to a dataset_info.json, or None to use
      the dataset_info.json beside the glob (if any). Without one, classes are
      named class_i, num_classes is the largest label value + 1 and the ignore
      label is 255.
    num_previews: write this many image | label overlay PNGs.
    preview_dir: where previews go; required when num_previews > 0.
    max_examples: stop after this many records (None or 0: all).

  Returns:
    A JSON-serialisable dict (see the keys built at the end); frequencies
    are fractions of the pixels that carry a class id (neither ignore nor
    out of range), so they sum to 1.

  Raises:
    ValueError: a glob that matches nothing, or previews without a folder.
  """
  if num_previews and not preview_dir:
    raise ValueError("--num_previews needs --preview_dir")
  paths = tf_example.expand_input_paths(
      [p.strip() for p in pattern.split(",") if p.strip()], "--input_pattern")
  info_source, info = _resolve_info(info, pattern)
  ignore_label = (info[_INFO.ignore_label] if info is not None
                  else standard_fields.IGNORE_LABEL)
  previews = _Previews(num_previews, preview_dir, info, ignore_label)
  tally = _Tally(previews)
  for path in paths:
    if not tally.read_file(path, max_examples):
      break
  report = {"input_pattern": pattern, "dataset_info": info_source}
  report.update(tally.report(info, ignore_label, max_examples))
  return report


def _resolve_info(info, pattern):
  """(where the dataset info came from, the info dict or None)."""
  if isinstance(info, str):
    return info, dataset_info.load(info)
  if info is None:
    source = dataset_info.find(pattern)
    return source, dataset_info.load(source) if source else None
  dataset_info.validate(info, "dataset info")
  return "<given>", info


class _Previews:
  """Writes the first `count` image | label overlays while reading."""

  def __init__(self, count, directory, info, ignore_label):
    self.count, self.directory, self.ignore_label = count, directory, ignore_label
    # Previews are drawn while reading, before an inferred num_classes is
    # known; default_palette gives every id the colour it would get then.
    self.palette = (dataset_info.palette(info) if info is not None
                    else visualization.default_palette(_NUM_VALUES))
    self.names = list(info[_INFO.class_names]) if info is not None else None
    self.paths = []
    if count:
      tf.io.gfile.makedirs(directory)

  def offer(self, image, label, filename):
    if len(self.paths) >= self.count:
      return
    path = os.path.join(self.directory, _preview_name(len(self.paths), filename))
    Image.fromarray(_preview(image, label, self.palette, self.ignore_label,
                             self.names)).save(path)
    self.paths.append(path)


def _count_key(counts, key):
  counts[key] = counts.get(key, 0) + 1


def _by_count(counts):
  return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


class _Tally:
  """What inspect_records counts, record by record (no per-pixel Python)."""

  def __init__(self, previews):
    self.previews = previews
    self.files = []
    self.sizes, self.formats, self.label_modes = {}, {}, {}
    self.value_counts = np.zeros(_NUM_VALUES, np.int64)  # pixels per value
    self.value_images = np.zeros(_NUM_VALUES, np.int64)  # images per value
    self.value_examples = {}  # label value -> first few image filenames
    self.mismatches, self.errors = _Problems(), _Problems()
    self.num_records = 0
    self.truncated = False

  def read_file(self, path, max_examples):
    """Counts the records of one file; False once max_examples is reached."""
    in_file = 0
    try:
      for record in tf.data.TFRecordDataset(path):
        if max_examples and self.num_records >= max_examples:
          self.truncated = True
          break
        self.num_records += 1
        in_file += 1
        self._add_record(path, record)
    except tf.errors.DataLossError as e:
      self.errors.add({"file": path, "filename": "<rest of the file>",
                       "error": f"corrupt TFRecord file: {_first_line(e)}"})
    self.files.append({"path": path, "records": in_file})
    return not self.truncated

  def _add_record(self, path, record):
    try:
      fields, image, label, mode = _decode(record)
    except (ValueError, tf.errors.OpError) as e:
      self.errors.add({"file": path, "filename": tf_example.filename_of(record),
                       "error": _first_line(e)})
      return
    filename = (fields[_TF.image_filename].decode("utf-8", "replace")
                or tf_example.UNNAMED_IMAGE)
    size = _size_text(image.shape)
    _count_key(self.sizes, size)
    _count_key(self.formats, fields[_TF.image_format].decode(
        "utf-8", "replace") or "<missing>")
    _count_key(self.label_modes, mode)
    if label.shape != image.shape[:2]:
      self.mismatches.add({"file": path, "filename": filename,
                           "image_size": size,
                           "label_size": _size_text(label.shape)})
      return
    counts = np.bincount(label.ravel(), minlength=_NUM_VALUES)
    self.value_counts += counts
    self.value_images += counts > 0
    first_seen = np.flatnonzero(
        (counts > 0) & (self.value_images <= MAX_EXAMPLE_FILENAMES))
    for value in first_seen.tolist():  # at most 256 values, not pixels
      self.value_examples.setdefault(value, []).append(filename)
    self.previews.offer(image, label, filename)

  def _notes(self, inferred, num_classes, ignore_label, max_examples):
    notes = []
    if inferred:
      notes.append(f"no dataset_info.json: classes are named class_i and "
                   f"num_classes ({num_classes}) is the largest label value "
                   f"+ 1; the ignore label is taken to be {ignore_label}")
    if self.truncated:
      notes.append(f"stopped after {max_examples} records (--max_examples)")
    odd_modes = sorted(m for m in self.label_modes if m != "L")
    if odd_modes:
      notes.append(f"label PNGs in PIL mode {', '.join(odd_modes)}, not 8-bit "
                   "grey (L): the reader converts them to 8-bit grey levels, "
                   "which are not class ids; convert them")
    return notes

  def report(self, info, ignore_label, max_examples):
    """The report's keys after input_pattern and dataset_info."""
    num_classes, names, inferred = _class_table(info, self.value_counts,
                                                ignore_label)
    counts = self.value_counts
    class_counts = counts[:num_classes]
    labelled = int(class_counts.sum())
    total = int(counts.sum())
    ignored = int(counts[ignore_label]) if ignore_label < _NUM_VALUES else 0
    outside = [v for v in np.flatnonzero(counts).tolist()
               if v >= num_classes and v != ignore_label]
    return {
        "num_files": len(self.files),
        "num_records": self.num_records,
        "files": self.files,
        "image_sizes": _by_count(self.sizes),
        "image_formats": _by_count(self.formats),
        "label_png_modes": _by_count(self.label_modes),
        "num_classes": int(num_classes),
        "num_classes_inferred": inferred,
        "ignore_label": int(ignore_label),
        "class_names": names,
        "num_pixels": total,
        "class_pixel_counts": [int(c) for c in class_counts],
        "class_pixel_frequency": [float(c) / max(labelled, 1)
                                  for c in class_counts],
        "classes_without_pixels": np.flatnonzero(class_counts == 0).tolist(),
        "ignore_pixels": ignored,
        "ignore_fraction": ignored / max(total, 1),
        "out_of_range": [
            {"value": v, "pixels": int(counts[v]),
             "images": int(self.value_images[v]),
             "examples": self.value_examples[v]} for v in outside],
        "num_label_size_mismatches": self.mismatches.count,
        "label_size_mismatches": self.mismatches.listed,
        "num_decode_errors": self.errors.count,
        "decode_errors": self.errors.listed,
        "previews": self.previews.paths,
        "notes": self._notes(inferred, num_classes, ignore_label, max_examples),
    }


def _table(header, rows, align):
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _split_name(report):
  """'val' when every file is a shard of split val, else the input pattern:
  what the records are, in the words of the report."""
  splits = {tf_example.split_of_shard(f["path"]) for f in report["files"]}
  return (splits.pop() if len(splits) == 1 and None not in splits
          else report["input_pattern"])


def _class_rows(report):
  """Rows of the class table, and the line that names the classes without
  a pixel: a model trained on these records cannot learn them, and an
  evaluation on them cannot score them, which a 0 among many rows hides."""
  absent = report["classes_without_pixels"]
  rows = [(i, name, f"{count} (absent)" if i in absent else count,
           f"{freq:.6f}") for i, (name, count, freq) in
          enumerate(zip(report["class_names"], report["class_pixel_counts"],
                        report["class_pixel_frequency"]))]
  if not absent:
    return rows, []
  names = ", ".join(report["class_names"][i] for i in absent)
  verb = "class has" if len(absent) == 1 else "classes have"
  return rows, ["", f"{len(absent)} {verb} no pixels in "
                f"{_split_name(report)}: {names}"]


def format_report(report):
  """The report as readable markdown-style text."""
  lines = [f"# {report['input_pattern']}", "",
           f"{report['num_records']} records in {report['num_files']} files; "
           f"dataset info: {report['dataset_info'] or 'none found'}", ""]
  lines += _table(["file", "records"],
                  [(os.path.basename(f["path"]), f["records"])
                   for f in report["files"]], "lr")
  for title, key, column in (("Image sizes", "image_sizes", "size (HxW)"),
                             ("Image formats", "image_formats", "image/format"),
                             ("Label PNG modes", "label_png_modes", "mode")):
    lines += ["", f"## {title}", ""]
    lines += _table([column, "images"], report[key].items(), "lr")
  lines += ["", f"## Classes ({report['num_classes']}, ignore label "
            f"{report['ignore_label']})", ""]
  rows, absent_line = _class_rows(report)
  lines += _table(["id", "name", "pixels", "frequency"], rows, "rlrr")
  lines += absent_line
  lines += ["", f"Ignore pixels: {report['ignore_pixels']} of "
            f"{report['num_pixels']} ({100 * report['ignore_fraction']:.2f}%)"]
  if report["out_of_range"]:
    lines += ["", f"## Label values outside 0..{report['num_classes'] - 1} "
              "(not the ignore label)", ""]
    lines += _table(["value", "images", "pixels", "first images"],
                    [(o["value"], o["images"], o["pixels"],
                      ", ".join(o["examples"])) for o in report["out_of_range"]],
                    "rrrl")
  if report["num_label_size_mismatches"]:
    lines += ["", f"## Labels of another size than their image "
              f"({report['num_label_size_mismatches']}, left out of the class "
              "counts)", ""]
    lines += _table(["file", "image", "image size", "label size"],
                    [(m["file"], m["filename"], m["image_size"], m["label_size"])
                     for m in report["label_size_mismatches"]], "llll")
  if report["num_decode_errors"]:
    lines += ["", f"## Records that do not decode ({report['num_decode_errors']})",
              ""]
    lines += _table(["file", "image", "error"],
                    [(e["file"], e["filename"], e["error"])
                     for e in report["decode_errors"]], "lll")
  if report["previews"]:
    lines += ["", f"Wrote {len(report['previews'])} previews to "
              f"{os.path.dirname(report['previews'][0])}"]
  for note in report["notes"]:
    lines += ["", f"Note: {note}"]
  return "\n".join(lines)


def _define_flags():
  # Only when run as a script, so importing this module never clashes with
  # another entry point's flags (predict's --dataset_info).
  flags.DEFINE_string("input_pattern", None,
                      "TFRecord glob (several separated by commas).")
  flags.DEFINE_string("dataset_info", None,
                      "dataset_info.json with class names and palette; "
                      "default: the one beside the glob.")
  flags.DEFINE_integer("num_previews", 0, "Image | label overlay PNGs to write.")
  flags.DEFINE_string("preview_dir", None, "Folder for the previews.")
  flags.DEFINE_string("output_json", None, "Also write the report as JSON here.")
  flags.DEFINE_integer("max_examples", 0, "Read at most this many records; 0: all.")
  flags.mark_flag_as_required("input_pattern")


def _main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  report = inspect_records(f.input_pattern, info=f.dataset_info,
                           num_previews=f.num_previews,
                           preview_dir=f.preview_dir,
                           max_examples=f.max_examples)
  print(format_report(report), flush=True)
  if f.output_json:
    directory = os.path.dirname(f.output_json)
    if directory:
      tf.io.gfile.makedirs(directory)
    with open(f.output_json, "w", encoding="utf-8") as out:
      json.dump(report, out, indent=2)


def command():
  """The fast-seg-inspect command, and python -m fast_seg.data.inspect."""
  _define_flags()
  cli.run(_main, usage=__doc__)


if __name__ == "__main__":
  command()
