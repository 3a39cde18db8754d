"""TFDS dataset builders and tf.data input pipelines for jaxreid."""
