"""The service's transparency log, as pure code: Merkle hashing and proofs (RFC 9162), signed
notes and checkpoints (C2SP), the leaves' exact bytes, the committed draw.

The store and the uploader both import it: it imports nothing from app/ or client/, and its
modules import ``cryptography`` only inside the functions that sign or verify (the uploader's
start-up is measured). See docs/transparency.md.
"""
