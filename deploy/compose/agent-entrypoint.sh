#!/bin/sh
# Entry point of the example agents: create the agent's home (identity, store,
# store key, relay pinned) the first time, then serve with the handler.
#   SEALWIRE_HOME     the home, on a volume (default /var/lib/sealwire/agent)
#   SEALWIRE_NAME     the agent's name
#   SEALWIRE_LISTEN   the transport URL it serves, e.g. tcp://alice:7000
#   SEALWIRE_RELAY    the relay's URL, e.g. http://relay:8700
#   SEALWIRE_HANDLER  MODULE:FUNCTION (default echo_handler:handle)
set -eu
home="${SEALWIRE_HOME:-/var/lib/sealwire/agent}"
if [ ! -f "$home/sealwire.toml" ]; then
    sealwire --home "$home" init --name "${SEALWIRE_NAME:?}" \
        --listen "${SEALWIRE_LISTEN:?}" --relay "${SEALWIRE_RELAY:?}"
fi
exec sealwire --home "$home" --log-format json serve --handler "${SEALWIRE_HANDLER:-echo_handler:handle}"
