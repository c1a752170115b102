#!/usr/bin/env bash
# What the client libraries' suites need, once: the TypeScript library's npm packages, and the
# JDK and Debian's jars (OkHttp 3, okio, Gson, JUnit 5) for the Java one. No Maven.
set -euo pipefail
cd "$(dirname "$0")"

(cd js && npm ci --no-audit --no-fund --silent)

packages=""
command -v javac >/dev/null 2>&1 || packages="default-jdk-headless"
for pair in okhttp:libokhttp-java okio:libokio-java gson:libgoogle-gson-java \
    junit-platform-console-standalone:junit5; do
    [ -e "/usr/share/java/${pair%%:*}.jar" ] || packages="$packages ${pair#*:}"
done
if [ -n "$packages" ]; then
    echo "installing$packages"
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    # shellcheck disable=SC2086
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null \
        || ($as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq $packages >/dev/null)
fi
java/build.sh
