# The eventbus command and the example service and worker, on Debian 12 like the rest of the
# project. Build stage: the -dev packages; runtime stage: only the shared libraries.
#   docker build -t eventbus .        docker run --rm eventbus eventbus --help
FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      librdkafka-dev nlohmann-json3-dev libsimdjson-dev prometheus-cpp-dev libsqlite3-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY examples examples
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEVENTBUS_BUILD_TESTS=OFF -DEVENTBUS_BUILD_EXAMPLES=ON \
 && cmake --build build -j"$(nproc)" \
 && cmake --install build --prefix /opt/eventbus

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka1 libsimdjson14 libprometheus-cpp-core1.0 libcivetweb1 libsqlite3-0 libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home eventbus
COPY --from=build /opt/eventbus/bin/ /usr/local/bin/
COPY config /etc/eventbus
USER eventbus
EXPOSE 9464
# SIGTERM (docker stop) makes the programs finish in-flight work, commit and exit 0.
STOPSIGNAL SIGTERM
CMD ["eventbus", "--help"]
