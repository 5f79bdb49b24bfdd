#!/usr/bin/env bash
# Every environment variable whose name holds a dot (discovery.type, xpack.security.enabled,
# …) becomes a -E setting, as the official image's entrypoint does; ES_JAVA_OPTS is read by
# the start script itself.
set -euo pipefail
settings=()
while IFS='=' read -r name value; do
    [[ "$name" == *.* ]] && settings+=("-E$name=$value")
done < <(env)
chown -R elasticsearch:elasticsearch /usr/share/elasticsearch/data
exec setpriv --reuid=elasticsearch --regid=elasticsearch --init-groups \
    /usr/share/elasticsearch/bin/elasticsearch "${settings[@]}"
