/**
 * Scheduled monitoring: `sail monitor --champion` on production's prediction log for the last
 * window (against the MLflow champion and its training split, not the workspace's bundle), then
 * the report archived. A breached limit fails the step (and the build), one line per limit in the
 * log; with retrain: true it first starts a new build of this job, which runs the whole pipeline.
 * A monitor that fails without judging (no log, no champion) starts nothing.
 * Settings: config.monitor, as sailPipeline checks them (log, window, retrain).
 */
def call(Map config = [:]) {
    Map monitor = config.monitor ?: [:]
    if (!(monitor.log instanceof CharSequence) || !monitor.log) {
        error 'sailMonitor: monitor.log must name production\'s prediction log ' +
                '(an s3:// prefix, a directory or a file)'
    }
    try {
        List settings = ["SAIL_MONITOR_LOG=${monitor.log}".toString(),
                         "SAIL_MONITOR_WINDOW=${monitor.window ?: '24h'}".toString()]
        sailSh(config, 'sail monitor --champion --log "$SAIL_MONITOR_LOG" ' +
                '--window "$SAIL_MONITOR_WINDOW"', ['verify', 'aws', 'mlflow'], settings)
    } catch (err) {
        if (monitor.retrain == true && breached()) {
            echo "sailMonitor: monitoring limits breached, starting /${env.JOB_NAME} to retrain"
            build(job: "/${env.JOB_NAME}", wait: false)
        }
        throw err
    } finally {
        archiveArtifacts(artifacts: 'reports/monitor.*, reports/monitor/**',
                allowEmptyArchive: true)
    }
}

/** Whether the monitor judged the traffic and found breached limits (reports/monitor.json). */
private boolean breached() {
    if (!fileExists('reports/monitor.json')) {
        return false
    }
    def report = readJSON(file: 'reports/monitor.json')
    return report.breaches instanceof List && !report.breaches.isEmpty()
}
