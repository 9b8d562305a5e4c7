# The callnext server in a container: built in one stage, run in another as a user without
# privileges. See docs/deploy.md ("Container").
#
#   docker build -t callnext .
#   docker run -p 8000:8000 callnext

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The release binary (`--profile perf`: thin LTO, one codegen unit).
RUN cargo build --locked --profile perf -p callnext-server \
    && cp target/perf/callnext /usr/local/bin/callnext

FROM debian:bookworm-slim
# curl for the health check; CA certificates for the HTTPS the batteries send (JWKS, log
# shipping, traces).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin callnext
COPY --from=build /usr/local/bin/callnext /usr/local/bin/callnext
COPY callnext.example.toml /etc/callnext/callnext.example.toml
USER callnext
ENV CALLNEXT_HOST=0.0.0.0 \
    CALLNEXT_PORT=8000 \
    CALLNEXT_LOG_FORMAT=json
EXPOSE 8000
# 200 while the server accepts requests, 503 once it drains.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health/ready || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/callnext"]
