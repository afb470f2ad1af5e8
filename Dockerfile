# flare for the FLARE challenge convention: `sh predict.sh` segments /workspace/inputs into
# /workspace/outputs. Build: docker build -t flare:latest .
# The model is compiled into the binary, so the runtime image holds just the binary and the
# entry script; no GPU, CUDA or Python is needed.

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p flare-cli \
 && strip target/release/flare

FROM debian:trixie-slim
COPY --from=build /src/target/release/flare /usr/local/bin/flare
COPY predict.sh /workspace/predict.sh
WORKDIR /workspace
RUN mkdir -p /workspace/inputs /workspace/outputs
CMD ["sh", "predict.sh"]
