# shippy-rs: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

.PHONY: help build test lint fmt demo dev bench chaos up down compose-test infra-up infra-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-12s %s\n", $$1, $$2 }'

build: ## build every binary
	cargo build --workspace --locked

test: lint ## format check, clippy, then every test against throwaway PostgreSQL, NATS, Consul and SMTP
	cargo dev test

lint: ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	cargo fmt --all

demo: ## natively: start everything, create a user, log in, ship consignment.json, show the welcome mail, stop
	cargo dev demo

dev: ## natively: the whole cluster on loopback until Ctrl-C
	cargo dev dev

bench: ## natively, release builds: h2load against a bare echo, our services and a Go peer, in rounds; CPU per request; bench/results.{json,svg}
	cargo dev bench

chaos: ## natively, own infra: mixed load and seeded random faults (CHAOS_DURATION=5m, CHAOS_SEED, STORE=postgres|mongodb), then a checker; report in target/chaos/
	cargo dev chaos

up: ## docker compose: build and start the cluster in the background
	docker compose up --build -d

down: ## docker compose: stop the cluster
	docker compose down

compose-test: ## docker compose for real: engine, images (or stand-ins), up --wait, a first shipment through the CLIs, down -v
	cargo dev compose-test

infra-up: ## start PostgreSQL, NATS and Consul on loopback; prints the URLs (eval-able)
	@cargo dev infra up

infra-down: ## stop what infra-up started
	@cargo dev infra down
