#!/usr/bin/env bash
# Builds build/dispatcher-client.jar (Java 8 bytecode) against Debian's OkHttp 3, okio and Gson,
# without Maven. `build.sh test` then runs the suite, with JUnit 5's console launcher, against the
# real dispatcher binary ($DISPATCHER_BIN, else ../../target/debug/dispatcher).
set -euo pipefail
cd "$(dirname "$0")"

JARS=/usr/share/java
for jar in okhttp okio gson; do
    if [ ! -e "$JARS/$jar.jar" ]; then
        echo "$JARS/$jar.jar is missing: apt-get install libokhttp-java libokio-java libgoogle-gson-java junit5" >&2
        exit 1
    fi
done
LIBS="$JARS/okhttp.jar:$JARS/okio.jar:$JARS/gson.jar"

rm -rf build/classes
mkdir -p build/classes
javac --release 8 -Xlint:all,-options -Werror -encoding UTF-8 -d build/classes -cp "$LIBS" \
    $(find src/main/java -name '*.java')
# META-INF/proguard: R8 reads an Android app's libraries' keep rules from there.
cp -R src/main/resources/. build/classes/
jar --create --file build/dispatcher-client.jar -C build/classes .
echo "wrote clients/java/build/dispatcher-client.jar"

if [ "${1:-}" = test ]; then
    LAUNCHER="$JARS/junit-platform-console-standalone.jar"
    if [ ! -e "$LAUNCHER" ]; then
        echo "$LAUNCHER is missing: apt-get install junit5" >&2
        exit 1
    fi
    rm -rf build/test-classes
    mkdir -p build/test-classes
    javac -encoding UTF-8 -Xlint:all,-try -Werror -d build/test-classes \
        -cp "build/classes:$LIBS:$LAUNCHER" $(find src/test/java -name '*.java')
    # The countdown test runs a second JVM, with its clock moved, on the same classes.
    java -Dclient.classpath="$PWD/build/test-classes:$PWD/build/classes:$LIBS" \
        -jar "$LAUNCHER" --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
        -cp "build/test-classes:build/classes:$LIBS" --scan-classpath build/test-classes
fi
