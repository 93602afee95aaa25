"""The export-side commands (quantize, inspect_checkpoint, export) and the handler every command runs in."""
