"""Image classification data: where it lives, how it is read, decoded and transformed."""
