"""The agency uploader: ``python -m client run|bet|winners|generate``."""
