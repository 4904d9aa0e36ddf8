#!/usr/bin/env bash
# Make sure the local RabbitMQ broker runs: start it when it does not, then
# wait (at most about two minutes) until it has finished booting.
set -u

ready() { timeout 15 rabbitmqctl -q await_startup >/dev/null 2>&1; }

if ready; then
    echo "broker: RabbitMQ is running"
    exit 0
fi
echo "broker: starting rabbitmq-server"
rabbitmq-server -detached
for _ in $(seq 1 60); do
    if ready; then
        echo "broker: RabbitMQ is running"
        exit 0
    fi
    sleep 2
done
echo "broker: RabbitMQ did not come up; see /var/log/rabbitmq/" >&2
exit 1
