-- otrs-exporter: custom SQL metrics (MySQL, MariaDB). Applied by `otrs-exporter db-init`;
-- safe to run again (nothing is dropped or changed when the tables exist).

-- One row per metric definition, as edited on the admin page or with `otrs-exporter custom`.
CREATE TABLE IF NOT EXISTS otrs_exporter_custom_metric (
    id                INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name              VARCHAR(200) NOT NULL UNIQUE,
    help              VARCHAR(1000) NOT NULL,
    metric_type       VARCHAR(16) NOT NULL,          -- gauge | counter
    query_sql         MEDIUMTEXT NOT NULL,           -- last column = value, others = labels
    label_names       VARCHAR(1000) NOT NULL DEFAULT '', -- comma-separated override; '' = column names
    ttl_seconds       INTEGER NOT NULL DEFAULT 60,   -- results are cached this long
    timeout_seconds   INTEGER NOT NULL DEFAULT 5,    -- statement timeout
    enabled           SMALLINT NOT NULL DEFAULT 1,
    revision          INTEGER NOT NULL DEFAULT 1,    -- +1 on every change
    deployed_revision INTEGER NOT NULL DEFAULT 0,    -- revision the last deploy published (0 = never)
    create_time       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    create_by         VARCHAR(200) NOT NULL,
    change_time       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    change_by         VARCHAR(200) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Every deploy: the exact set of definitions published to the exporters (JSON), so an
-- exporter whose shared segment was cleared, or another node, serves the same set.
CREATE TABLE IF NOT EXISTS otrs_exporter_custom_deploy (
    id          INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    deploy_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    deploy_by   VARCHAR(200) NOT NULL,
    definitions MEDIUMTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
