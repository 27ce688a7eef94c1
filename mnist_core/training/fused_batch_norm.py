"""Keras's batch normalisation, trained with TensorFlow's one fused kernel. Worker side only.

Keras 3 normalises a batch as separate operations (the batch's mean and variance, then
`(x - mean) / sqrt(variance + epsilon) * gamma + beta`), each a pass over the activations in
memory, and their gradients as many again: in the fast CNN, the batch normalisation of
its first block alone was 15% of a training step on a CPU (benchmarks/RESULTS.md, "Four
epochs, and where the time goes"). `FusedBatchNormV3` computes the same normalisation, and
its gradient, in one pass each, about 2x faster here. The moving mean and variance are
updated as Keras updates them (with the batch's variance, not the kernel's
Bessel-corrected one), so the layer is `keras.layers.BatchNormalization` as the Train page
shows it. Inference, and whatever the fused kernel does not cover (a mask, renormalisation,
synchronised statistics, another axis than the channels of an image, an epsilon below the
kernel's 1.001e-5, float64 weights), runs Keras's own code.
"""

from __future__ import annotations

import keras
import tensorflow as tf

MIN_EPSILON = 1.001e-5  # the kernel raises a smaller epsilon to this one


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is one `FusedBatchNormV3`."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.epsilon >= MIN_EPSILON
                and self.dtype == "float32"):
            return super().call(inputs, training=training, mask=mask)
        # As Keras does: the statistics in float32 whatever the layer's compute dtype.
        inputs = tf.cast(inputs, "float32")
        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        outputs, mean, corrected = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        # The kernel returns the variance with Bessel's correction (divided by n - 1);
        # Keras's moving variance averages the batch's own (divided by n).
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = corrected * (count - 1.0) / count
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)
