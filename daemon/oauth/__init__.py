"""OAuth connect, refresh and disconnect, as services the CLI and the HTTP app both call."""
