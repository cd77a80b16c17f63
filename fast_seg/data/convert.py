r"""Converts a dataset in its official layout into sharded TFRecords.

    python -m fast_seg.data.convert --dataset cityscapes \
        --input_dir ~/data/cityscapes --output_dir data/cityscapes_tfrecords

Writes `{split}-0000i-of-0000N.tfrecord` per split and `dataset_info.json`
(classes, palette, ignore label, split sizes, class pixel frequencies).
Pairs are decoded, checked and encoded in parallel worker processes; shards
are written under `.partial` names and renamed only when every split is
done, so an interrupted run never leaves files that look complete.
`--list_datasets` prints the converters and the flags each one takes.
"""

import collections
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import time

from absl import flags
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import convert_lib
from fast_seg.data import dataset_info
from fast_seg.data import converters  # registers the built-in converters
from fast_seg.data import tf_example
from fast_seg.utils import cli
from fast_seg.utils import progress as progress_lib

_INFO = standard_fields.DatasetInfoFields

del converters  # imported for its registrations
# The registry itself (live): name -> Converter class.
CONVERTERS = convert_lib.CONVERTERS
ON_ERROR_CHOICES = ("fail", "skip")
# Auto sharding: about this many images per shard.
_IMAGES_PER_SHARD = 250
_MAX_AUTO_SHARDS = 128
PARTIAL_SUFFIX = ".partial"


def shard_glob(split):
  return f"{split}-?????-of-?????.tfrecord"


# ----------------------------------------------------------------------------
# Worker side: one converter per process, set once by the pool initializer.

_worker_converter = None


def _init_worker(converter):
  global _worker_converter
  _worker_converter = converter
  if multiprocessing.parent_process() is not None:
    # A pool worker: Ctrl-C is the parent's to handle (it stops the pool and
    # removes the partial shards); SIGTERM from pool.terminate just ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _encode(sample):
  return convert_lib.encode_pair(_worker_converter, sample)


# ----------------------------------------------------------------------------
# Output directory handling.


def _existing_split_files(output_dir, split):
  """Shards (complete or partial) of `split` already in output_dir."""
  pattern = os.path.join(output_dir, shard_glob(split))
  return sorted(tf.io.gfile.glob(pattern)
                + tf.io.gfile.glob(pattern + PARTIAL_SUFFIX))


def _same_classes(info, converter):
  return (info.get(_INFO.class_names) == converter.class_names
          and info.get(_INFO.ignore_label) == converter.ignore_label)


def _check_output_dir(output_dir, converter, splits, overwrite):
  """Refuses to mix with an earlier conversion unless --overwrite.

  Shards of other splits written by the same converter (same class table)
  are fine: converting split by split into one folder is common.

  Returns:
    The earlier dataset info to merge into, or None.
  """
  cli.check_output_dir(output_dir, "--output_dir")
  if not os.path.isdir(output_dir):
    return None
  previous = None
  info_path = os.path.join(output_dir, _INFO.file_name)
  if os.path.isfile(info_path):
    try:
      previous = dataset_info.load(info_path)
    except ValueError:
      previous = None
  ours = set()
  for split in splits:
    ours.update(os.path.basename(p)
                for p in _existing_split_files(output_dir, split))
  if overwrite:
    if previous is not None and not _same_classes(previous, converter):
      previous = None
    return previous
  others = []
  for name in sorted(os.listdir(output_dir)):
    if name in ours:
      continue
    if name == _INFO.file_name and previous is not None and _same_classes(
        previous, converter):
      continue
    if name.endswith(".tfrecord") and previous is not None and _same_classes(
        previous, converter):
      continue  # shards of another split of the same dataset
    others.append(name)
  clashing = sorted(ours) + others
  if clashing:
    shown = ", ".join(clashing[:4]) + (" ..." if len(clashing) > 4 else "")
    raise ValueError(
        f"--output_dir {output_dir} already holds {shown}; pass --overwrite "
        f"to replace the {', '.join(splits)} shards (or choose an empty "
        "directory)")
  return previous


# ----------------------------------------------------------------------------
# Conversion.


class _SplitWriter:
  """Round-robin writer of one split's shards under partial names."""

  def __init__(self, output_dir, split, num_shards):
    self.final_paths = [tf_example.shard_path(output_dir, split, i, num_shards)
                        for i in range(num_shards)]
    self.partial_paths = [p + PARTIAL_SUFFIX for p in self.final_paths]
    self.counts = [0] * num_shards
    self._writers = [tf.io.TFRecordWriter(p) for p in self.partial_paths]
    self._next = 0

  def write(self, pair):
    example = tf_example.make_example(
        pair.image_bytes, pair.label_png, pair.name, pair.height, pair.width,
        pair.image_format)
    shard = self._next % len(self._writers)
    self._writers[shard].write(example.SerializeToString())
    self.counts[shard] += 1
    self._next += 1

  def close(self):
    for writer in self._writers:
      writer.close()

  def remove_partials(self):
    """Closes the files (a full disk may fail their flush) and removes them."""
    for writer in self._writers:
      with contextlib.suppress(tf.errors.OpError):
        writer.close()
    for path in self.partial_paths:
      if os.path.exists(path):
        os.remove(path)

  def finalize(self):
    """Renames the shards, numbering only non-empty ones; returns the paths."""
    used = [i for i, n in enumerate(self.counts) if n] or [0]
    if len(used) < len(self.counts):
      for i in range(len(self.counts)):
        if i not in used:
          os.remove(self.partial_paths[i])
    output_dir = os.path.dirname(self.final_paths[0])
    split = os.path.basename(self.final_paths[0]).split("-")[0]
    paths = []
    for new_index, old_index in enumerate(used):
      path = tf_example.shard_path(output_dir, split, new_index, len(used))
      os.replace(self.partial_paths[old_index], path)
      paths.append(path)
    self.counts = [self.counts[i] for i in used]
    return paths


def _auto_num_shards(num_images):
  return max(1, min(_MAX_AUTO_SHARDS,
                    math.ceil(num_images / _IMAGES_PER_SHARD)))


def list_splits(converter, splits=None, val_fraction=0.0, seed=0):
  """Lists the pairs of each requested split.

  Args:
    converter: a Converter.
    splits: split names, or None for every split the dataset has.
    val_fraction: for datasets with one labelled split only: the fraction of
      it held out as 'val' (deterministic for a seed).
    seed: seed of that split.

  Returns:
    (dict split -> samples, dict split -> listing problems).
  """
  available = list(converter.splits)
  carve_val = val_fraction > 0
  if carve_val:
    if "val" in available or len(available) != 1:
      raise ValueError(
          f"--val_fraction applies to datasets with a single labelled split; "
          f"{converter.name} has {', '.join(available)}")
    available.append("val")
  splits = list(splits or available)
  unknown = [s for s in splits if s not in available]
  if unknown:
    raise ValueError(f"--split {','.join(unknown)} is not a split of "
                     f"{converter.name}; choose from {', '.join(available)}")
  samples, problems = {}, {}
  if carve_val:
    source = converter.splits[0]
    pairs, listing = converter.list_pairs(source)
    train, val = convert_lib.split_by_fraction(pairs, val_fraction, seed)
    carved = {source: train, "val": val}
    for split in splits:
      samples[split] = carved[split]
      problems[split] = listing if split == source else []
    if source not in splits and listing:
      problems["val"] = listing
    return samples, problems
  for split in splits:
    samples[split], problems[split] = converter.list_pairs(split)
  return samples, problems


def convert(converter, output_dir, splits=None, num_shards=0, workers=None,
            on_error="fail", overwrite=False, val_fraction=0.0, seed=0,
            progress=True, log=print):
  """Converts the requested splits; returns a summary dict.

  Args:
    converter: a convert_lib.Converter.
    output_dir: where shards and dataset_info.json go.
    splits: split names, or None for all.
    num_shards: shards per split; 0 picks about one per 250 images.
    workers: worker processes (None: one per CPU; 1: in this process).
    on_error: 'fail' stops at the first bad file naming it; 'skip' skips,
      counts and lists bad files.
    overwrite: replace the requested splits' shards if present.
    val_fraction: see `list_splits`.
    seed: seed of the val split.
    progress: show a progress bar.
    log: function called with each summary line.

  Returns:
    dict with per-split counts, shard paths, problems, and the info path.

  Raises:
    convert_lib.ConversionError: the first bad file, with on_error 'fail'.
    ValueError: bad arguments or an output dir that holds another run.
  """
  if on_error not in ON_ERROR_CHOICES:
    raise ValueError(f"--on_error must be one of {ON_ERROR_CHOICES}, got "
                     f"'{on_error}'")
  if num_shards < 0:
    raise ValueError(f"--num_shards must be >= 0, got {num_shards}")
  start = time.time()
  samples, problems = list_splits(converter, splits, val_fraction, seed)
  splits = list(samples)
  _check_listing(converter, samples, problems, on_error)
  previous = _check_output_dir(output_dir, converter, splits, overwrite)
  os.makedirs(output_dir, exist_ok=True)
  stats = _write_splits(converter, output_dir, samples, problems, num_shards,
                        workers, on_error, progress)
  info = _dataset_info(converter, stats, previous)
  info_path = dataset_info.write(output_dir, info)
  summary = {
      "dataset": converter.name,
      "output_dir": output_dir,
      "dataset_info": info_path,
      "seconds": round(time.time() - start, 2),
      "splits": {split: {k: v for k, v in s.items() if k != "class_pixels"}
                 for split, s in stats.items()},
  }
  for line in summary_lines(summary):
    log(line)
  return summary


def _check_listing(converter, samples, problems, on_error):
  """Unpaired files stop the run with on_error 'fail'; an empty split always."""
  if on_error == "fail":
    for split in samples:
      if problems[split]:
        _raise(problems[split][0])
  for split in samples:
    if not samples[split] and not problems[split]:
      raise convert_lib.LayoutError(
          f"no {split} images found for --dataset {converter.name} in "
          f"{converter.source_text(split)}")


def _start_workers(converter, workers):
  """A fork pool of `workers` processes, or None to encode in this process."""
  workers = workers or os.cpu_count() or 1
  if workers == 1:
    _init_worker(converter)
    return None
  # Fork: workers inherit the converter without re-importing anything, and
  # never touch TensorFlow (encode_pair is numpy + PIL).
  return multiprocessing.get_context("fork").Pool(
      workers, initializer=_init_worker, initargs=(converter,))


def _write_splits(converter, output_dir, samples, problems, num_shards,
                  workers, on_error, show_progress):
  """Writes every split under partial names, then publishes them together.

  Returns:
    dict split -> statistics (counts, problems, files, images per shard).
  """
  pool = _start_workers(converter, workers)
  writers, stats = {}, {}
  try:
    for split, split_samples in samples.items():
      shards = num_shards or _auto_num_shards(len(split_samples))
      writers[split] = writer = _SplitWriter(output_dir, split, shards)
      stats[split] = _convert_split(split, split_samples, writer, pool,
                                    converter, on_error, show_progress)
      stats[split]["problems"] = ([str(p) for p in problems[split]]
                                  + stats[split]["problems"])
      stats[split]["skipped"] = len(stats[split]["problems"])
      writer.close()
    # Every split succeeded: replace the old shards, publish the new ones.
    for split, writer in writers.items():
      for path in _existing_split_files(output_dir, split):
        if path not in writer.partial_paths:
          os.remove(path)
      stats[split]["files"] = writer.finalize()
      stats[split]["images_per_shard"] = writer.counts
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
    for writer in writers.values():
      writer.remove_partials()
  return stats


def _raise(problem):
  """Stops the run at `problem`, with its fix: skipping suits a few bad
  files; a setting that every file needs comes as the problem's hint,
  which the CLI prints under the error line."""
  if problem.hint:
    raise convert_lib.ConversionError(problem.path, problem.message,
                                      problem.hint)
  raise convert_lib.ConversionError(
      problem.path, problem.message + " (--on_error skip skips such files "
      "and converts the rest)")


def _convert_split(split, split_samples, writer, pool, converter, on_error,
                   show_progress):
  """Encodes and writes one split; returns its statistics."""
  if show_progress:
    bar = progress_lib.bar(len(split_samples), unit_name="image")
    print(f"{converter.name} {split}: {len(split_samples)} images",
          file=sys.stderr, flush=True)
  results = (pool.imap(_encode, split_samples, chunksize=4) if pool
             else map(_encode, split_samples))
  class_pixels = unlabelled = 0
  sizes = collections.Counter()
  notes = collections.Counter()
  problems, filtered, hints = [], [], []
  for i, result in enumerate(results):
    if isinstance(result, convert_lib.Problem):
      if on_error == "fail":
        _raise(result)
      problems.append(str(result))
      if result.hint and result.hint not in hints:
        hints.append(result.hint)
    elif isinstance(result, convert_lib.Filtered):
      filtered.append(f"{result.name}: {result.reason}")
    else:
      writer.write(result)
      class_pixels = class_pixels + result.class_pixels
      unlabelled += not result.class_pixels[:-1].any()
      sizes[f"{result.height}x{result.width}"] += 1
      if result.note:
        notes[result.note] += 1
    if show_progress:
      bar.update(i + 1)
  written = sum(writer.counts)
  return {"written": written, "skipped": len(problems),
          "filtered": len(filtered), "problems": problems, "hints": hints,
          "filtered_images": filtered, "notes": dict(notes),
          "image_sizes": dict(sizes.most_common()),
          "class_pixels": class_pixels, "unlabelled": int(unlabelled)}


def _dataset_info(converter, stats, previous):
  """The dataset_info dict, merged with an earlier run's other splits."""
  info = dict(previous or {})
  info.update({
      "dataset": converter.name,
      _INFO.num_classes: converter.num_classes,
      _INFO.ignore_label: converter.ignore_label,
      _INFO.class_names: converter.class_names,
      _INFO.palette: [list(map(int, c)) for c in converter.palette],
  })
  info.update(converter.extra_info())
  per_split = {key: dict(info.get(key, {})) for key in (
      _INFO.num_examples, _INFO.class_pixel_frequency, _INFO.file_patterns,
      "ignore_pixel_fraction", "image_sizes", "skipped", "filtered")}
  for split, s in stats.items():
    pixels = s["class_pixels"]
    labelled = int(pixels[:-1].sum()) if s["written"] else 0
    total = int(pixels.sum()) if s["written"] else 0
    per_split[_INFO.num_examples][split] = s["written"]
    per_split[_INFO.class_pixel_frequency][split] = (
        [round(int(c) / labelled, 6) for c in pixels[:-1]] if labelled
        else [0.0] * converter.num_classes)
    per_split[_INFO.file_patterns][split] = f"{split}-*.tfrecord"
    per_split["ignore_pixel_fraction"][split] = (
        round(int(pixels[-1]) / total, 6) if total else 0.0)
    per_split["image_sizes"][split] = s["image_sizes"]
    per_split["skipped"][split] = s["skipped"]
    per_split["filtered"][split] = s["filtered"]
  info.update(per_split)
  return info


def summary_lines(summary):
  """The human summary: images per split and shard, skipped files, notes."""
  lines = [f"{summary['dataset']} -> {summary['output_dir']} "
           f"({summary['seconds']} s)",
           "| split | written | skipped | filtered | shards (images each) |",
           "|---|---|---|---|---|"]
  for split, s in summary["splits"].items():
    shards = s.get("images_per_shard", [])
    lines.append(f"| {split} | {s['written']} | {s['skipped']} | "
                 f"{s['filtered']} | {len(shards)} ({', '.join(map(str, shards))}) |")
  for split, s in summary["splits"].items():
    for note, count in s["notes"].items():
      lines.append(f"{split}: {note}: {count} image(s)")
    if s["problems"]:
      lines.append(f"{split}: skipped {len(s['problems'])} file(s):")
      lines.extend(f"  {p}" for p in s["problems"])
      lines.extend(f"{split}: {hint}" for hint in s["hints"])
    if s["filtered"]:
      lines.append(f"{split}: filtered out {s['filtered']} image(s) "
                   f"(first: {s['filtered_images'][0]})")
    if s["unlabelled"]:  # not an error: test splits without public labels
      whole = ("; no labelled pixel in the split: it cannot be trained on"
               if s["unlabelled"] == s["written"] else "")
      lines.append(f"warning: {split}: {s['unlabelled']} of {s['written']} "
                   f"image(s) have only the ignore label{whole}")
  lines.append(f"wrote {summary['dataset_info']}")
  return lines


# ----------------------------------------------------------------------------
# Command line.

def _define_flags(flag_values=flags.FLAGS):
  """Flags of the CLI: the generic ones, then those the converters declare."""
  flags.DEFINE_string("dataset", None,
                      f"Dataset layout: {', '.join(CONVERTERS)}.",
                      flag_values=flag_values)
  flags.DEFINE_string("output_dir", None, "Directory for the TFRecords.",
                      flag_values=flag_values)
  flags.DEFINE_list("split", None,
                    "Splits to convert (comma separated); default: all.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_shards", 0,
                       "Shards per split; 0: about one per 250 images.",
                       flag_values=flag_values)
  flags.DEFINE_integer("workers", None,
                       "Worker processes (default: one per CPU core).",
                       flag_values=flag_values)
  flags.DEFINE_enum("on_error", "fail", ON_ERROR_CHOICES,
                    "fail: stop at the first bad file; skip: skip, count and "
                    "list bad files.", flag_values=flag_values)
  flags.DEFINE_bool("overwrite", False,
                    "Replace the shards of the converted splits if present.",
                    flag_values=flag_values)
  flags.DEFINE_float("val_fraction", 0.0,
                     "For datasets with one labelled split (KITTI road, hair, "
                     "folder): fraction held out as 'val'.",
                     flag_values=flag_values)
  flags.DEFINE_integer("seed", 0, "Seed of the --val_fraction split.",
                       flag_values=flag_values)
  flags.DEFINE_bool("progress", True, "Show a progress bar.",
                    flag_values=flag_values)
  flags.DEFINE_bool("list_datasets", False,
                    "Print the converters and their flags, then exit.",
                    flag_values=flag_values)
  _define_converter_flags(flag_values)


def _define_converter_flags(flag_values):
  """Each converter's declared flags, once; the help names who reads them."""
  readers = collections.defaultdict(list)
  for _, cls in CONVERTERS.items():
    for flag in cls.flags + cls.info_flags:
      readers[flag.name].append((cls.name, flag))
  for name, users in readers.items():
    flag = users[0][1]
    help_text = f"{', '.join(user for user, _ in users)}: {flag.help}"
    define = getattr(flags, f"DEFINE_{flag.kind}")
    if flag.kind == "enum":
      define(name, flag.default, flag.choices, help_text,
             flag_values=flag_values)
    else:
      define(name, flag.default, help_text, flag_values=flag_values)


def make_converter(name, flag_values):
  """Builds converter `name` from the flags it declares.

  Raises:
    ValueError: unknown dataset, or a flag that does not apply to it.
  """
  if name not in CONVERTERS:
    raise ValueError(f"--dataset must be one of {', '.join(CONVERTERS)}, got "
                     f"'{name}'")
  cls = CONVERTERS.get(name)
  own = cls.flag_names + tuple(f.name for f in cls.info_flags)
  wrong = [n for n in _specific_flags()
           if flag_values[n].present and n not in own]
  if wrong:
    raise ValueError(
        f"--{', --'.join(wrong)} does not apply to --dataset {name} (its "
        f"flags: --{', --'.join(cls.flag_names)})")
  return cls(**{n: flag_values[n].value for n in cls.flag_names})


def _specific_flags():
  names = set()
  for _, cls in CONVERTERS.items():
    names.update(f.name for f in cls.flags + cls.info_flags)
  return sorted(names)


def list_datasets_text():
  lines = []
  for name, cls in CONVERTERS.items():
    lines.append(f"{name:12s} {cls.description}")
    lines.append(f"{'':12s} splits: {', '.join(cls.splits)}; flags: "
                 f"--{', --'.join(cls.flag_names)}")
  return "\n".join(lines)


def _main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.list_datasets:
    print(list_datasets_text())
    return
  if not f.dataset:
    raise ValueError(f"--dataset is required; one of {', '.join(CONVERTERS)}")
  converter_class = (CONVERTERS.get(f.dataset) if f.dataset in CONVERTERS
                     else None)
  text = converter_class and converter_class.info_text(f)
  if text:
    print(text)
    return
  try:
    converter = make_converter(f.dataset, f)
    if not f.output_dir:
      raise ValueError("--output_dir is required")
    convert(converter, f.output_dir, splits=f.split, num_shards=f.num_shards,
            workers=f.workers, on_error=f.on_error, overwrite=f.overwrite,
            val_fraction=f.val_fraction, seed=f.seed, progress=f.progress)
  except convert_lib.LayoutError as e:
    e.hint = layout_hint(CONVERTERS.get(f.dataset))
    raise


def layout_hint(converter_class):
  """What a LayoutError prints under its line: the tree the converter reads
  and, for any other tree, the folder converter."""
  return (f"--dataset {converter_class.name} reads:\n"
          f"{converter_class.layout()}\n"
          "Another layout: --dataset folder --images_dir DIR --labels_dir DIR "
          "(with --train_list / --val_list / --test_list for split lists); "
          "see docs/datasets.md")


def command():
  """The fast-seg-convert command, and python -m fast_seg.data.convert."""
  _define_flags()
  cli.run(_main, usage=__doc__)


if __name__ == "__main__":
  command()
