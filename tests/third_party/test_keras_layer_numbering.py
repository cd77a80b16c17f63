"""Keras' automatic layer numbers: found in a file's order, moved onto it."""

from third_party import keras_layer_numbering


def test_numbered_layers_are_ordered_by_number_not_text():
  names = ["conv2d_10/kernel", "conv2d_9/kernel", "conv2d_9/bias", "conv2d/kernel",
           "conv2d_transpose_2/kernel", "Conv1/kernel", "block_1_conv2d/kernel"]
  assert keras_layer_numbering.numbered_layers(names, "conv2d") == [
      "conv2d", "conv2d_9", "conv2d_10"]


def test_one_counter_runs_across_nested_models():
  names = ["encoder/conv2d_4/kernel", "decoder/conv2d_5/kernel",
           "encoder/conv2d_3/kernel"]
  assert keras_layer_numbering.numbered_layers(names, "conv2d") == [
      "encoder/conv2d_3", "encoder/conv2d_4", "decoder/conv2d_5"]


def test_renumber_moves_first_build_names_onto_the_files():
  def first_build(layer, kind):
    return {"a": "conv2d", "b": "conv2d_1", "c": "conv2d_transpose",
            "d": "decoder/conv2d_2", "e": "Conv1"}[layer] + "/" + kind
  names = ["conv2d_4/kernel", "conv2d_5/kernel", "decoder/conv2d_6/kernel",
           "conv2d_transpose_7/kernel", "Conv1/kernel"]
  name_map = keras_layer_numbering.renumber(first_build, names,
                                            ("conv2d_transpose", "conv2d"))
  assert [name_map(l, "kernel") for l in "abcde"] == [
      "conv2d_4/kernel", "conv2d_5/kernel", "conv2d_transpose_7/kernel",
      "decoder/conv2d_6/kernel", "Conv1/kernel"]


def test_a_file_with_fewer_layers_leaves_the_rest_unmoved():
  name_map = keras_layer_numbering.renumber(
      lambda layer, kind: f"{layer}/{kind}", ["conv2d_3/kernel"], ("conv2d",))
  assert name_map("conv2d", "kernel") == "conv2d_3/kernel"
  assert name_map("conv2d_1", "kernel") == "conv2d_1/kernel"
