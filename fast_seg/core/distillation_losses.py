"""Knowledge-distillation losses between a student's and a teacher's outputs.

Pure tensor functions, so they can be checked against numpy on hand cases;
the teacher that feeds them is built and run by training/distillation.py.

pixel_kl: Hinton et al.'s soft targets, per pixel: the KL divergence of the
  student's from the teacher's class distribution, both softened by a
  temperature T (softmax(logits / T)), averaged over the pixels and scaled
  by T^2 so that its gradients keep their size as T changes (the usual
  convention; T = 1 is the plain KL). A binary model's single sigmoid
  channel is a Bernoulli distribution: the binary KL of sigmoid(z / T).
pair_affinity: pair-wise distillation of Liu et al., "Structured Knowledge
  Distillation for Semantic Segmentation" (CVPR 2019): the feature maps are
  average-pooled to a small grid, every cell's feature vector is
  L2-normalised, and the squared difference between the student's and the
  teacher's cosine-similarity matrices (all cells against all cells) is
  averaged. Only the spatial structure is compared, so the two feature maps
  may have different channel counts.
"""

import tensorflow as tf

# Keeps the normalisation of an all-zero cell (a dead ReLU region) finite.
_EPSILON = 1e-8


def match_size(tensor, size):
  """`tensor` [N, h, w, C] resized bilinearly to `size` (H, W), as float32.

  The teacher may see the image at another output stride than the student:
  its maps are brought to the student's resolution, never the reverse, so
  the student's gradients are those of its own outputs.
  """
  tensor = tf.cast(tensor, tf.float32)
  return tf.image.resize(tensor, size, method="bilinear")


def pixel_kl(student_logits, teacher_logits, temperature, binary=False):
  """Mean pixel-wise KL(teacher || student) of softened outputs, times T^2.

  Args:
    student_logits: float [N, H, W, C] (C = 1 for binary models).
    teacher_logits: float, the same shape (see match_size); no gradient
      flows into it.
    temperature: T > 0; the logits are divided by it before the softmax
      (or sigmoid).
    binary: the single channel is a sigmoid logit: the KL between the
      Bernoulli distributions sigmoid(t / T) and sigmoid(s / T).

  Returns:
    float32 scalar, >= 0; 0 when the logits are equal.
  """
  student = tf.cast(student_logits, tf.float32) / temperature
  teacher = tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature
  if binary:
    # Both outcomes, from log-sigmoids: stable for large logits.
    log_p = tf.concat([tf.math.log_sigmoid(teacher),
                       tf.math.log_sigmoid(-teacher)], axis=-1)
    log_q = tf.concat([tf.math.log_sigmoid(student),
                       tf.math.log_sigmoid(-student)], axis=-1)
  else:
    log_p = tf.nn.log_softmax(teacher, axis=-1)
    log_q = tf.nn.log_softmax(student, axis=-1)
  kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
  return tf.reduce_mean(kl) * (temperature ** 2)


def _pooling_matrix(size, grid_size):
  """[grid_size, size] weights averaging cell i's span of `size` positions.

  Adaptive average pooling's spans: floor(i * size / g) up to
  ceil((i + 1) * size / g), so a size not divisible by the grid (or smaller
  than it) still gets every position counted. A matrix, not tf.image's area
  resize, because that op has no gradient.
  """
  size_f = tf.cast(size, tf.float32)
  cells = tf.range(grid_size, dtype=tf.float32)[:, tf.newaxis]
  starts = tf.floor(cells * size_f / grid_size)
  ends = tf.math.ceil((cells + 1) * size_f / grid_size)
  positions = tf.range(size_f)[tf.newaxis, :]
  inside = tf.cast((positions >= starts) & (positions < ends), tf.float32)
  return inside / tf.reduce_sum(inside, axis=1, keepdims=True)


def pooled_affinity(features, grid_size):
  """Cosine similarities between the cells of a pooled feature map.

  Args:
    features: float [N, H, W, C].
    grid_size: the map is average-pooled (adaptive average pooling) to
      grid_size x grid_size cells, which keeps the matrix small at any
      input size.

  Returns:
    float32 [N, grid_size^2, grid_size^2], entries in [-1, 1].
  """
  features = tf.cast(features, tf.float32)
  shape = tf.shape(features)
  pooled = tf.einsum("gh,nhwc,kw->ngkc",
                     _pooling_matrix(shape[1], grid_size), features,
                     _pooling_matrix(shape[2], grid_size))
  cells = tf.reshape(pooled, [shape[0], grid_size * grid_size, shape[3]])
  cells = cells * tf.math.rsqrt(
      tf.reduce_sum(tf.square(cells), axis=-1, keepdims=True) + _EPSILON)
  return tf.matmul(cells, cells, transpose_b=True)


def pair_affinity(student_features, teacher_features, grid_size):
  """Mean squared difference of the two feature maps' affinity matrices.

  Args:
    student_features: float [N, H, W, C_s].
    teacher_features: float [N, H', W', C_t]; no gradient flows into it.
    grid_size: see pooled_affinity.

  Returns:
    float32 scalar, >= 0; 0 for equal feature maps.
  """
  student = pooled_affinity(student_features, grid_size)
  teacher = tf.stop_gradient(pooled_affinity(teacher_features, grid_size))
  return tf.reduce_mean(tf.square(student - teacher))
