"""The models folder, the single source of truth: run folders, records, the training lease."""
