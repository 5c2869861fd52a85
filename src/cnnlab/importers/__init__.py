"""Networks written for other frameworks (Keras configs, Caffe prototxt) read into the description."""
