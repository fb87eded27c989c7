"""The two frozen teachers of EmoDistill: their networks and their per-fold training.

`linguistic` holds the text encoder f_T^L (transcripts -> logits, z_L), `prosodic` the ResNet
f_T^P over eGeMAPS low-level descriptors (-> logits, z_P), and `fit` trains each on one fold,
freezes it and caches its outputs for the student. Nothing here knows the student or the KD loss.
"""
