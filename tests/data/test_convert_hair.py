"""Hair masks in the Figaro1k, LFW and folder layouts, built from the real
Figaro1k samples in ../shared/data/figaro1k_hair."""

import json

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import hair
from tests import helpers

SOURCE = helpers.SHARED_DATA / "figaro1k_hair"
pytestmark = pytest.mark.skipif(
    not SOURCE.is_dir(), reason=f"real Figaro1k samples not found at {SOURCE}")
NAMES = ["sample_1", "sample_2"]
# LFW names for the two samples (any <person>_<nnnn> works).
LFW_NAMES = {"sample_1": "Ada_Lovelace_0001", "sample_2": "Alan_Turing_0003"}
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _quiet(**kwargs):
  return {"workers": 1, "progress": False, "log": lambda line: None, **kwargs}


def _label(name):
  """The shipped mask: 0 background, 1 hair."""
  return np.asarray(Image.open(SOURCE / "labels" / f"{name}.png"))


def _image(name):
  return Image.open(SOURCE / "images" / f"{name}.png")


def _face_box(shape):
  box = np.zeros(shape, bool)
  box[200:330, 180:340] = True
  return box


def _lfw_mask(name):
  """Colour mask like LFW Part Labels: red hair, green face, blue rest."""
  label = _label(name)
  rgb = np.empty(label.shape + (3,), np.uint8)
  rgb[:] = BLUE
  rgb[_face_box(label.shape)] = GREEN
  rgb[label == 1] = RED
  return rgb


def _lfw_expected(name):
  """hair 1, face 2, background 0."""
  label = _label(name)
  expected = np.where(_face_box(label.shape), 2, 0).astype(np.uint8)
  expected[label == 1] = 1
  return expected


@pytest.fixture(name="figaro_dir")
def fixture_figaro_dir(tmp_path):
  """Figaro1k/{Original,GT}/{Training,Testing}; sample_2 is the test one."""
  root = tmp_path / "src" / "Figaro1k"
  for name, folder in zip(NAMES, ("Training", "Testing")):
    (root / "Original" / folder).mkdir(parents=True)
    (root / "GT" / folder).mkdir(parents=True)
    _image(name).save(root / "Original" / folder / f"{name}-org.jpg",
                      quality=95)
    # White hair on black, stored as a 1-bit PBM like the original GT.
    Image.fromarray(_label(name) * 255).convert("1").save(
        root / "GT" / folder / f"{name}-gt.pbm")
  return tmp_path / "src"


@pytest.fixture(name="lfw_dir")
def fixture_lfw_dir(tmp_path):
  """lfw_funneled/<person>/<name>.jpg, parts_lfw_funneled_gt_images/*.ppm."""
  root = tmp_path / "lfw"
  (root / "parts_lfw_funneled_gt_images").mkdir(parents=True)
  for name, lfw_name in LFW_NAMES.items():
    person = lfw_name.rsplit("_", 1)[0]
    (root / "lfw_funneled" / person).mkdir(parents=True)
    _image(name).save(root / "lfw_funneled" / person / f"{lfw_name}.jpg")
    Image.fromarray(_lfw_mask(name)).save(
        root / "parts_lfw_funneled_gt_images" / f"{lfw_name}.ppm")
  # Most LFW images have no part labels; they are not listed.
  (root / "lfw_funneled" / "Grace_Hopper").mkdir()
  _image(NAMES[0]).save(root / "lfw_funneled" / "Grace_Hopper"
                        / "Grace_Hopper_0001.jpg")
  return root


def test_figaro_pbm_masks_give_hair(figaro_dir, tmp_path):
  converter = hair.HairConverter(layout="figaro", input_dir=str(figaro_dir))
  assert converter.splits == ("train", "test")
  out = tmp_path / "out"
  convert.convert(converter, str(out), **_quiet(workers=2))
  for split, name in zip(("train", "test"), NAMES):
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert list(records) == [name]
    np.testing.assert_array_equal(records[name][1], _label(name))
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["class_names"] == ["background", "hair"]
  assert info["num_examples"] == {"train": 1, "test": 1}
  assert info["hair_layout"] == "figaro"


def test_figaro_grey_masks_threshold_at_128(figaro_dir):
  path = figaro_dir / "Figaro1k" / "GT" / "Training" / "sample_1-gt.pbm"
  path.unlink()
  grey = np.where(_label("sample_1") == 1, 200, 30).astype(np.uint8)
  Image.fromarray(grey).save(path.with_suffix(".png"))
  converter = hair.HairConverter(layout="figaro",
                                 input_dir=str(figaro_dir / "Figaro1k"))
  samples, problems = converter.list_pairs("train")
  assert [s.name for s in samples] == ["sample_1"] and not problems
  np.testing.assert_array_equal(
      converter.read_label(samples[0], (512, 512)), _label("sample_1"))


def test_figaro_image_without_mask_is_reported(figaro_dir):
  (figaro_dir / "Figaro1k" / "GT" / "Testing" / "sample_2-gt.pbm").unlink()
  converter = hair.HairConverter(layout="figaro", input_dir=str(figaro_dir))
  _, problems = converter.list_pairs("test")
  assert len(problems) == 1
  assert problems[0].message.endswith("GT/Testing/sample_2-gt.pbm)")


def test_lfw_default_classes(lfw_dir, tmp_path):
  out = tmp_path / "out"
  summary = convert.convert(
      hair.HairConverter(layout="lfw", input_dir=str(lfw_dir)), str(out),
      val_fraction=0.5, **_quiet())
  assert summary["splits"]["train"]["problems"] == []
  records = {**helpers.read_records(str(out / "train-*.tfrecord")),
             **helpers.read_records(str(out / "val-*.tfrecord"))}
  assert sorted(records) == sorted(LFW_NAMES.values())
  for name, lfw_name in LFW_NAMES.items():
    np.testing.assert_array_equal(records[lfw_name][1], _lfw_expected(name))
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["class_names"] == ["background", "hair", "face"]
  assert info["palette"] == [[0, 0, 0], list(RED), list(GREEN)]


def test_lfw_strict_colour_rules(lfw_dir):
  rules = "background=0,0,255; hair=255,0,0; face=0,255,0"
  converter = hair.HairConverter(layout="lfw", input_dir=str(lfw_dir),
                                 mask_classes=rules)
  samples, problems = converter.list_pairs("train")
  assert not problems
  for sample in samples:
    name = {v: k for k, v in LFW_NAMES.items()}[sample.name]
    np.testing.assert_array_equal(converter.read_label(sample, (512, 512)),
                                  _lfw_expected(name))
  mask = _lfw_mask("sample_1")
  mask[0, 0] = (10, 20, 30)
  Image.fromarray(mask).save(samples[0].label_path)
  with pytest.raises(convert_lib.ConversionError, match=r"\(10, 20, 30\)"):
    converter.read_label(samples[0], (512, 512))
  # Without a background rule other colours are background.
  lenient = hair.HairConverter(layout="lfw", input_dir=str(lfw_dir),
                               mask_classes="hair=255,0,0;face=0,255,0")
  np.testing.assert_array_equal(lenient.read_label(samples[0], (512, 512)),
                                _lfw_expected("sample_1"))


def test_lfw_mask_without_image_is_reported(lfw_dir):
  Image.fromarray(_lfw_mask("sample_1")).save(
      lfw_dir / "parts_lfw_funneled_gt_images" / "Nobody_Here_0002.ppm")
  _, problems = hair.HairConverter(layout="lfw",
                                   input_dir=str(lfw_dir)).list_pairs("train")
  assert len(problems) == 1
  assert problems[0].message.startswith("mask without an image (expected ")
  assert problems[0].message.endswith("Nobody_Here/Nobody_Here_0002.jpg)")


def test_channel_rules_first_listed_wins(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "masks").mkdir()
  mask = np.array([[[255, 0, 0], [0, 200, 0], [255, 255, 0], [0, 0, 255]]],
                  np.uint8)
  Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
  sample = convert_lib.Sample("a", "unused.jpg", str(tmp_path / "masks/a.png"))
  kwargs = {"images_dir": str(tmp_path / "images"),
            "labels_dir": str(tmp_path / "masks")}
  converter = hair.HairConverter(
      mask_classes="face=channel:1;hair=channel:0", **kwargs)
  assert converter.class_names == ["background", "face", "hair"]
  assert converter.palette == [[0, 0, 0], list(GREEN), list(RED)]
  np.testing.assert_array_equal(converter.read_label(sample, (1, 4)),
                                [[2, 1, 1, 0]])
  strict = hair.HairConverter(
      mask_classes="hair=channel:0;background=channel:2", **kwargs)
  with pytest.raises(convert_lib.ConversionError,
                     match=r"1 pixel\(s\) \(e\.g\. colour \(0, 200, 0\)\)"):
    strict.read_label(sample, (1, 4))
  ignore = hair.HairConverter(
      mask_classes="hair=channel:0;ignore=channel:1", **kwargs)
  assert ignore.class_names == ["background", "hair"]
  np.testing.assert_array_equal(ignore.read_label(sample, (1, 4)),
                                [[1, 255, 1, 0]])


def test_folder_layout_default_and_value_rules(tmp_path):
  images, labels = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  labels.mkdir()
  _image("sample_1").save(images / "sample_1.png")
  _image("sample_2").save(images / "sample_2.jpg", quality=95)
  Image.fromarray(_label("sample_1")).save(labels / "sample_1_mask.png")
  Image.fromarray(_label("sample_2")).save(labels / "sample_2-gt.png")
  out = tmp_path / "out"
  convert.convert(hair.HairConverter(images_dir=str(images),
                                     labels_dir=str(labels)), str(out),
                  **_quiet())
  records = helpers.read_records(str(out / "train-*.tfrecord"))
  assert sorted(records) == NAMES
  for name in NAMES:
    np.testing.assert_array_equal(records[name][1], _label(name))
  # 0/255 masks need --mask_classes hair=255; the default says so.
  Image.fromarray(_label("sample_1") * 255).save(labels / "sample_1_mask.png")
  converter = hair.HairConverter(images_dir=str(images),
                                 labels_dir=str(labels))
  samples, _ = converter.list_pairs("train")
  with pytest.raises(convert_lib.ConversionError, match="hair=255"):
    converter.read_label(samples[0], (512, 512))
  converter = hair.HairConverter(images_dir=str(images),
                                 labels_dir=str(labels),
                                 mask_classes="hair=255")
  np.testing.assert_array_equal(converter.read_label(samples[0], (512, 512)),
                                _label("sample_1"))
  # Not listed, no background rule: value 1 of sample_2 is background.
  assert converter.read_label(samples[1], (512, 512)).max() == 0


@pytest.mark.parametrize("mask_classes,message", [
    ("hair", "not name=r,g,b"),
    ("hair=255,0", "r,g,b"),
    ("hair=256,0,0", r"0\.\.255"),
    ("hair=channel:3", r"0\.\.2"),
    ("hair=255,0,0;face=1", "mixes color and value"),
    ("hair=1;Hair=2", "class hair more than once"),
    ("hair=1;face=1", "mask key 1 more than once"),
    ("background=0", "at least one class"),
    (" ; ", "empty"),
])
def test_mask_classes_errors(tmp_path, mask_classes, message):
  with pytest.raises(ValueError, match=message):
    hair.HairConverter(images_dir=str(tmp_path), labels_dir=str(SOURCE),
                       mask_classes=mask_classes)


def test_layout_flag_errors(tmp_path, figaro_dir):
  with pytest.raises(ValueError, match="--layout must be one of"):
    hair.HairConverter(layout="celeba", input_dir=str(tmp_path))
  with pytest.raises(ValueError, match="not --input_dir"):
    hair.HairConverter(input_dir=str(tmp_path))
  with pytest.raises(ValueError, match="apply to --layout folder"):
    hair.HairConverter(layout="figaro", input_dir=str(figaro_dir),
                       images_dir=str(tmp_path))
  with pytest.raises(ValueError, match="must be different"):
    hair.HairConverter(images_dir=str(tmp_path), labels_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="lfw_funneled"):
    hair.HairConverter(layout="lfw", input_dir=str(tmp_path)).list_pairs(
        "train")
