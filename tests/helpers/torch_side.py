"""Running the book's scripts on real PyTorch for the chapter tests
(tests/d2l/test_d2l_conv_chapters.py, test_d2l_modern_chapters.py)."""

# Runs every script given on the command line in one process; prints {path: stdout} as
# JSON. The scripts' imports have been changed back to torch and a d2l stand-in.
TORCH_DRIVER = """
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        runpy.run_path(path, run_name="__main__")
    out[path] = buffer.getvalue()
print(json.dumps(out))
"""
