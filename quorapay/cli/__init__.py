"""The `quorapay` command line: thin click commands over the library."""
