"""The documentation site's generated reference pages (the command line, the configuration, the
HTTP API) and the MkDocs hook that writes them into the site at build time, so the site always
matches the code. Not part of the product (the wheel does not ship it)."""
