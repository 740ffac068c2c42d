# Prometheus (admin API on, for TSDB snapshots) scraping every exporter node's ebpf_exporter (9435) and
# node exporter (9100), and Grafana with that Prometheus and the statx dashboard (../grafana).
{ config, lib, ... }:
let
  cfg = config.g5k.collector;
  inherit (lib) mkOption types;
  job = name: port: {
    job_name = name;
    static_configs = [ { targets = map (host: "${host}:${toString port}") cfg.exporters; } ];
    file_sd_configs = lib.optional (cfg.targetsDir != null) { files = [ "${cfg.targetsDir}/${toString port}.json" ]; };
  };
in
{
  options.g5k.collector = {
    exporters = mkOption { type = types.listOf types.str; default = [ ]; description = "Exporter host names known at build time."; };
    targetsDir = mkOption { type = types.nullOr types.str; default = null; description = "Directory of file_sd files <port>.json, for exporters known at boot."; };
    scrapeInterval = mkOption { type = types.str; default = "1s"; };
  };

  config = {
    services.prometheus = {
      enable = true;
      port = 9090;
      extraFlags = [ "--web.enable-admin-api" ];
      globalConfig = { scrape_interval = cfg.scrapeInterval; scrape_timeout = cfg.scrapeInterval; };
      scrapeConfigs = [ (job "ebpf" 9435) (job "node" 9100) ];
    };
    services.grafana = {
      enable = true;
      # A throwaway collector on a reserved node: fixed credentials, no secrets worth keeping.
      settings.server = { http_addr = "0.0.0.0"; http_port = 3000; };
      settings.security = { admin_user = "admin"; admin_password = "admin"; secret_key = "g5kdeploy-ephemeral"; };
      provision.enable = true;
      provision.datasources.settings.datasources = [
        { name = "Prometheus"; type = "prometheus"; uid = "prometheus"; url = "http://localhost:9090"; isDefault = true; }
      ];
      provision.dashboards.settings.providers = [ { name = "g5kdeploy"; options.path = ../grafana; } ];
    };
    networking.firewall.allowedTCPPorts = [ 9090 3000 ];
  };
}
