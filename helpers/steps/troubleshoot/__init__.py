"""06_troubleshooting: the doctor's checks and the pitfalls it names."""
