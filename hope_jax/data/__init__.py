"""Text sources (embedded, local files, TFDS), the SentencePiece tokenizer, token caches, batches."""
