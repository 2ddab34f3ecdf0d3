"""The parallel shell: commands and file copies on many nodes over ssh, and their output."""
