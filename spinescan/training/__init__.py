"""The one shared Keras training loop, its input pipeline, pretraining and the run directories it writes."""
