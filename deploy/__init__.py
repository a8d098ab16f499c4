"""Running alignflow as a team: the services (docker-compose.yml, or services.py without Docker)."""
