"""Episodes, the synthetic interaction suite, TFDS/ArrayRecord storage and Grain pipelines."""
