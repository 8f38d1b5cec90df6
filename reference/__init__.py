"""Reference designs kept to compare the service against (not part of the product)."""
