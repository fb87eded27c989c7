"""The contract shared by every stage: audio in, and (later) the model bundle's layout.

Deliberately small and torch-free: `service/` imports it, so nothing here may pull in
torch, transformers or openSMILE.
"""
