"""Answer recommendation requests over HTTP from an exported model (no model code loaded).

  python -m transrec_jax.export --workdir=RUN --output=DIR
  python -m transrec_jax.serve --export=DIR [--port=8000] [--host=127.0.0.1]
  curl -d '{"history": ["2571", "1196", "260"], "k": 10}' localhost:8000/recommend

transrec_jax/serving/http.py: the requests and answers. Every batch size the server pads to is
compiled before it listens, so no request waits for a compile of its batch size.
"""

from __future__ import annotations

import os

from absl import flags

from transrec_jax import cli
from transrec_jax.serving import exported, http

_EXPORT = flags.DEFINE_string("export", None, "A directory written by transrec_jax.export.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).")


def main(argv):
    del argv
    if _EXPORT.value is None or not os.path.isfile(os.path.join(_EXPORT.value, exported.MANIFEST)):
        raise cli.UsageError(f"--export={_EXPORT.value!r}: expected a directory written by "
                             "transrec_jax.export (with manifest.json)")
    if not 0 <= _PORT.value < 65536:
        raise cli.UsageError(f"--port={_PORT.value}: expected 0..65535")
    try:
        model = exported.load(_EXPORT.value)
    except (OSError, ValueError, KeyError) as e:  # a directory from elsewhere, or damaged
        raise cli.UsageError(f"--export={_EXPORT.value!r}: {e}") from None
    model.warm_up()
    try:
        server = http.make_server(model, _HOST.value, _PORT.value)
    except OSError as e:
        raise cli.UsageError(f"--host={_HOST.value} --port={_PORT.value}: {e.strerror}") from None
    host, port = server.server_address[:2]
    print(f"serving {model.manifest['model']} top-{model.k} of {model.num_items:,} items on "
          f"http://{host}:{port} (POST /recommend, GET /health)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    cli.run(main)
