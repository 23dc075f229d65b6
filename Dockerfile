# Writ server image. Built FROM scratch around the static binary that
# `make image` compiles with the local toolchain: no base image is pulled.
FROM scratch
COPY bin/writ-linux-amd64 /writ
EXPOSE 7400 7401 7402
VOLUME ["/data"]
ENTRYPOINT ["/writ"]
CMD ["server", "--data-dir", "/data", "--api-addr", "0.0.0.0:7400", "--raft-addr", "0.0.0.0:7401"]
