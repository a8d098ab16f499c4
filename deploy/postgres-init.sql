-- The second database of the shared PostgreSQL: Prefect's (MLflow's is POSTGRES_DB).
CREATE DATABASE prefect OWNER alignflow;
