# services.g5k-nightly: `g5k nightly run PLAYBOOK` every evening, before the Grid'5000 night (19:00 Paris time),
# so the run can reserve the next non-working slot that holds its walltime. For a controller machine, not for
# the experiment's nodes. Credentials come from environmentFile (G5K_USERNAME=..., G5K_PASSWORD=..., kept out of
# the Nix store) or from the user's ~/.python-grid5000.yaml; never put them in an option here.
{ config, lib, ... }:
let
  cfg = config.services.g5k-nightly;
  inherit (lib) mkEnableOption mkIf mkOption types;
in
{
  options.services.g5k-nightly = {
    enable = mkEnableOption "nightly g5kdeploy runs on Grid'5000";

    package = mkOption {
      type = types.package;
      description = "The g5kdeploy package; its bin/g5k is run.";
    };

    playbook = mkOption {
      # A string, not a path: a path would be copied into the world-readable store, with whatever it names.
      type = types.str;
      example = "/home/alice/experiments/statx.yaml";
      description = "Absolute path of the playbook to run each night.";
    };

    resultsDir = mkOption {
      type = types.str;
      default = "/var/lib/g5k-nightly/results";
      description = "Where the runs and the nightly history are kept (g5k --results-dir).";
    };

    user = mkOption {
      type = types.str;
      example = "alice";
      description = "The user the runs belong to (their ~/.python-grid5000.yaml and SSH key are used).";
    };

    onCalendar = mkOption {
      type = types.str;
      # Before 19:00 so the advance reservation (19:05 by default) is submitted in time.
      default = "*-*-* 18:30:00 Europe/Paris";
      description = "systemd OnCalendar= expression for starting the run.";
    };

    randomizedDelaySec = mkOption {
      type = types.str;
      default = "5min";
      description = "Spreads the start so many agents do not query the API in the same second.";
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/g5k-nightly.env";
      description = "File with G5K_USERNAME and G5K_PASSWORD (mode 0600), read by systemd at start.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.playbook && lib.hasPrefix "/" cfg.resultsDir;
        message = "services.g5k-nightly: playbook and resultsDir must be absolute paths";
      }
    ];

    systemd.tmpfiles.rules = [ "d ${cfg.resultsDir} 0750 ${cfg.user} - -" ];

    systemd.services.g5k-nightly = {
      description = "g5kdeploy nightly run of ${baseNameOf cfg.playbook}";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.PYTHONUNBUFFERED = "1";
      serviceConfig = {
        # One run to completion per trigger; oneshot has no start timeout, and a weekend run lasts days.
        Type = "oneshot";
        User = cfg.user;
        WorkingDirectory = dirOf cfg.playbook;
        ExecStart = lib.escapeShellArgs [
          "${cfg.package}/bin/g5k"
          "--results-dir"
          cfg.resultsDir
          "nightly"
          "run"
          cfg.playbook
        ];
        # SIGINT is the agent's Ctrl-C: it releases the run's jobs before exiting.
        KillSignal = "SIGINT";
        TimeoutStopSec = "5min";
      } // lib.optionalAttrs (cfg.environmentFile != null) { EnvironmentFile = cfg.environmentFile; };
    };

    systemd.timers.g5k-nightly = {
      description = "start g5k-nightly.service before the Grid'5000 night";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.onCalendar;
        # A machine that was off at the trigger runs it at boot; the run then picks the next slot.
        Persistent = true;
        RandomizedDelaySec = cfg.randomizedDelaySec;
        AccuracySec = "1min";
      };
    };
  };
}
