"""Training-time model optimization with tfmot: magnitude pruning and QAT."""
