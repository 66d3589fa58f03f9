/**
 * The SAIL delivery pipeline of a generated project, as one declarative pipeline.
 *
 * Every commit: say what the build keeps (sail doctor --ci), run the project's tests (sail test: a
 * failing one stops the build before anything is built), build images, validate and split, train the candidates in parallel, evaluate,
 * gate, report (always, so a refused model shows why; posted on pull requests). On the main
 * branch only: push, package, smoke test, publish, deploy to staging, say the live evidence on
 * the candidate (sailEvidence), then wait for an approver, whose question carries it, and
 * promote to production. Waiting holds no executor (agent none at the top, the input comes
 * before the stage's agent); a milestone stops a superseded build from promoting and a lock
 * serialises production deployments. With config.monitor.log, a cron trigger on the main branch
 * starts builds that only monitor production (sailMonitor). All logic is in `sail`; these stages
 * only call it.
 */
def call(Map config = [:]) {
    List known = ['approvers', 'agentLabel', 'mainBranch', 'deployLock', 'environment', 'signingKeyCredentials',
                  'verifyKeyCredentials', 'auditKeyCredentials', 'githubTokenCredentials', 'githubRepository', 'registryCredentials', 'awsCredentials', 'mlflowCredentials',
                  'monitor']
    List unknown = []
    for (def key in config.keySet()) {
        if (!known.contains(key)) {
            unknown.add(key)
        }
    }
    if (!unknown.isEmpty()) {
        error "sailPipeline: unknown setting(s) ${unknown.join(', ')}; known: ${known.join(', ')}"
    }
    if (!(config.approvers instanceof CharSequence) || !(config.approvers ==~ /[A-Za-z0-9_.@-]+(,[A-Za-z0-9_.@-]+)*/)) {
        error "sailPipeline: approvers must name who may promote to production (Jenkins users or groups, comma-separated), got '${config.approvers}'"
    }
    String agentLabel = config.agentLabel ?: 'sail'
    String mainBranch = config.mainBranch ?: 'main'
    String deployLock = config.deployLock ?: "${env.JOB_NAME}"
    Map monitor = monitorSettings(config.monitor)
    boolean pullRequest = env.CHANGE_ID != null
    boolean onMain = !pullRequest && env.BRANCH_NAME == mainBranch
    // A build the cron trigger started only monitors; any other build (push, retraining) delivers.
    String timerCause = 'hudson.triggers.TimerTrigger$TimerTriggerCause'
    boolean timer = !currentBuild.getBuildCauses(timerCause).isEmpty()
    boolean monitoring = monitor != null && onMain && timer
    boolean delivers = onMain && !monitoring
    String schedule = monitor != null && onMain ? monitor.schedule : ''

    pipeline {
        agent none
        options {
            buildDiscarder(logRotator(numToKeepStr: '50'))
        }
        triggers {
            cron("${schedule}")
        }
        stages {
            stage('Monitor production') {
                when { expression { monitoring } }
                agent { label "${agentLabel}" }
                steps { sailMonitor(config + [monitor: monitor]) }
            }
            stage('CI') {
                when { expression { !monitoring } }
                agent { label "${agentLabel}" }
                stages {
                    stage('What this build keeps') {
                        steps { sailDoctor(config) }
                    }
                    stage('Project tests') {
                        steps { sailTest(config) }
                    }
                    stage('Build images') {
                        steps { sailBuild(config) }
                    }
                    stage('Validate and split') {
                        steps { sailPrepare(config) }
                    }
                    stage('Train candidates') {
                        steps { sailTrain(config) }
                    }
                    stage('Evaluate') {
                        steps { sailEvaluate(config) }
                    }
                    stage('Gate') {
                        steps { sailGate(config + [register: delivers]) }
                        post {
                            always { sailReport(config + [post: pullRequest]) }
                        }
                    }
                    stage('Push data and model') {
                        when { expression { delivers } }
                        steps { sailPush(config) }
                    }
                    stage('Package') {
                        when { expression { delivers } }
                        steps { sailPackage(config) }
                    }
                    stage('Smoke test') {
                        when { expression { delivers } }
                        steps { sailSmoke(config) }
                    }
                    stage('Publish') {
                        when { expression { delivers } }
                        steps { sailPublish(config) }
                    }
                    stage('Deploy to staging') {
                        when { expression { delivers } }
                        steps {
                            // An older build arriving after a newer one stops here instead of overwriting staging.
                            milestone(ordinal: 1, label: 'staging')
                            lock(resource: "${deployLock}-staging") {
                                sailDeploy(config + [to: 'staging'])
                            }
                            // The promotion stage runs on a fresh agent: it takes this build's reports
                            // along, the live evidence (reports/live/) included.
                            stash(name: 'sail-reports', includes: 'reports/*.json,reports/live/*')
                        }
                    }
                    stage('Live evidence') {
                        when { expression { delivers } }
                        // The newest canary or shadow report on this candidate, for the approver.
                        steps { sailEvidence(config) }
                    }
                }
            }
            stage('Promote to production') {
                when {
                    beforeInput true
                    expression { delivers }
                }
                options { timeout(time: 7, unit: 'DAYS') }  // unanswered for a week: the build is aborted
                input {
                    message "Promote the model this build deployed to staging into production?\n${env.SAIL_LIVE_EVIDENCE}"
                    ok 'Promote'
                    submitter "${config.approvers}"
                    submitterParameter 'SAIL_APPROVER'
                }
                agent { label "${agentLabel}" }
                steps {
                    // A build older than one already approved and past this point is aborted here.
                    milestone(ordinal: 2, label: 'production')
                    lock(resource: "${deployLock}-production") {
                        unstash 'sail-reports'
                        sailPromote(config + [approver: env.SAIL_APPROVER])
                        sailDeploy(config + [to: 'production'])
                    }
                }
            }
        }
    }
}

/**
 * config.monitor with its defaults, or null when monitoring is off (no log named): log
 * (production's prediction log), window (default 24h), schedule (cron, default 'H 6 * * *'),
 * retrain (default false).
 */
private Map monitorSettings(Object given) {
    if (given == null) {
        return null
    }
    if (!(given instanceof Map)) {
        error "sailPipeline: monitor must be a map (log, window, schedule, retrain), got '${given}'"
    }
    Map monitor = [log: '', window: '24h', schedule: 'H 6 * * *', retrain: false] + (Map) given
    List unknown = []
    for (def key in monitor.keySet()) {
        if (!(key in ['log', 'window', 'schedule', 'retrain'])) {
            unknown.add(key)
        }
    }
    if (!unknown.isEmpty()) {
        error "sailPipeline: unknown monitor setting(s) ${unknown.join(', ')}; " +
                'known: log, window, schedule, retrain'
    }
    if (!(monitor.window instanceof CharSequence) || !(monitor.window ==~ /[1-9][0-9]*[mhd]/)) {
        error 'sailPipeline: monitor.window must be a number of minutes, hours or days ' +
                "(30m, 24h, 7d), got '${monitor.window}'"
    }
    if (!(monitor.retrain instanceof Boolean)) {
        error "sailPipeline: monitor.retrain must be true or false, got '${monitor.retrain}'"
    }
    boolean texts = monitor.log instanceof CharSequence && monitor.schedule instanceof CharSequence
    if (!texts || !monitor.schedule) {
        error 'sailPipeline: monitor.log and monitor.schedule must be text, ' +
                "got '${monitor.log}' and '${monitor.schedule}'"
    }
    return monitor.log ? monitor : null
}
