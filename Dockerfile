# convd — HTTP daemon for a Conv2d layer (forward/backward), as a container image.
#
#   docker build -t convd .                  (podman: podman build --format docker -t convd .)
#   docker run --rm -p 127.0.0.1:8080:8080 convd
#
# Two stages on the same Debian 12 base: the first has the compiler and the -dev
# packages, the second only the four runtime libraries, the binary, its config file
# and a non-root user. Configure with CONVD_* variables (see `docker run convd --help`).
# podman builds OCI images by default, and the OCI format has no HEALTHCHECK field: build
# with --format docker to keep it, or pass --health-cmd 'convd --healthcheck' at run time.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        gcc make pkg-config libc6-dev libmicrohttpd-dev libcjson-dev libopenblas-dev \
        libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
WORKDIR /src
COPY Makefile ./
COPY core/ core/
COPY server/ server/
# GET /openapi.yaml serves this file, compiled in as a C string
COPY docs/openapi.yaml docs/
COPY scripts/embed-text.sh scripts/
RUN make -j"$(nproc)" build/convd && strip build/convd

FROM debian:bookworm-slim
# libopenblas0-pthread is the OpenBLAS the -dev package links against in the build stage
# (libopenblas0 is only a metapackage choosing it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        libmicrohttpd12 libcjson1 libopenblas0-pthread libsqlite3-0 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && groupadd --gid 10001 convd \
 && useradd --uid 10001 --gid convd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin convd \
 && install -d -o convd -g convd -m 0750 /var/lib/convd
COPY --from=build /src/build/convd /usr/local/bin/convd
COPY config/convd.conf /etc/convd/convd.conf

# The file gives the defaults; CONVD_* variables override it, flags override both.
ENV CONVD_CONFIG=/etc/convd/convd.conf \
    CONVD_BIND=0.0.0.0 \
    CONVD_PORT=8080 \
    CONVD_STATE_DIR=/var/lib/convd
# The session database (state_dir) outlives the container in this volume, created owned
# by convd so a fresh named volume is writable by it. The variable wins over the config
# file's relative var/state, which would land in the unwritable /.
VOLUME /var/lib/convd
USER convd:convd
EXPOSE 8080
# `convd --healthcheck` GETs /healthz on the configured port and exits 0/1: no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["convd", "--healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["convd"]
