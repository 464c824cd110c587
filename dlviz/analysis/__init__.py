"""Looking inside a model: feature maps, receptive fields, loss surfaces, and the labs."""
