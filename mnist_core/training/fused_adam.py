"""Keras's Adam, each weight's update run as TensorFlow's one fused kernel. Worker side only.

Keras 3 applies Adam's update as about ten separate elementwise operations per weight (m,
v, their corrections, the step), each a pass over the weight in memory: a quarter of a
training step of the notebook's MLP on a CPU (benchmarks/RESULTS.md, "The notebook's MLP in
float32"). `ResourceApplyAdam` does the same arithmetic in one pass:

    alpha = lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    m += (g - m) * (1 - beta_1);  v += (g * g - v) * (1 - beta_2)
    w -= m * alpha / (sqrt(v) + epsilon)

which is `keras.optimizers.Adam.update_step` line for line, so the code the Train page shows
(`keras.optimizers.Adam(...)`) stays what is computed. Where the fused kernel does not apply
(a distribution strategy's mirrored weights, sparse gradients, AMSGrad), Keras's own update
runs.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with each weight's update as one `ResourceApplyAdam`."""

    def update_step(self, gradient, variable, learning_rate):
        if (self.amsgrad or tf.distribute.has_strategy()
                or isinstance(gradient, tf.IndexedSlices)):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)

        def constant(value):
            return tf.cast(value, dtype)

        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.value.handle, v=v.value.handle,
            beta1_power=tf.pow(constant(self.beta_1), step),
            beta2_power=tf.pow(constant(self.beta_2), step),
            lr=constant(learning_rate), beta1=constant(self.beta_1),
            beta2=constant(self.beta_2), epsilon=constant(self.epsilon),
            grad=constant(gradient), use_locking=False)
