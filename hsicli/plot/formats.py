"""The output formats of `hsi plot`, light (the CLI lists them as choices) and below both the
dispatcher (`hsicli.plot`) and the drawing helpers (`common`), which read them."""

# Output formats by file suffix: what matplotlib writes (jpg and webp without embedded provenance,
# so re-running them is not a no-op), and tif, a GeoTIFF export of a map.
FORMAT_SUFFIXES = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".eps": "eps", ".jpg": "jpg", ".jpeg": "jpg",
                   ".webp": "webp", ".tif": "tif", ".tiff": "tif"}
FORMATS = tuple(dict.fromkeys(FORMAT_SUFFIXES.values()))
