"""The runtime-side commands' logic; scripts/<command>.py are thin shims calling `main(argv)`."""
