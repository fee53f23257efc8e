"""Text data: rows of strings, the tokenizer, span masking and GLUE's text-to-text formats."""
