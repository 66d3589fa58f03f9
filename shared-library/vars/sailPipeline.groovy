/**
 * The SAIL delivery pipeline of a generated project, as one declarative pipeline.
 *
 * Every commit: build images, validate and split, train the candidates in parallel, evaluate,
 * gate, report (always, so a refused model shows why; posted on pull requests). On the main
 * branch only: push, package, smoke test, publish, deploy to staging, then wait for an approver
 * and promote to production. Waiting holds no executor (agent none at the top, the input comes
 * before the stage's agent); a milestone stops a superseded build from promoting and a lock
 * serialises production deployments. All logic is in `sail`; these stages only call it.
 */
def call(Map config = [:]) {
    List known = ['approvers', 'agentLabel', 'mainBranch', 'deployLock', 'environment', 'signingKeyCredentials',
                  'verifyKeyCredentials', 'auditKeyCredentials', 'githubTokenCredentials', 'githubRepository', 'registryCredentials', 'awsCredentials', 'mlflowCredentials']
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
    boolean pullRequest = env.CHANGE_ID != null
    boolean delivers = !pullRequest && env.BRANCH_NAME == mainBranch

    pipeline {
        agent none
        options {
            buildDiscarder(logRotator(numToKeepStr: '50'))
        }
        stages {
            stage('CI') {
                agent { label "${agentLabel}" }
                stages {
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
                            // The promotion stage runs on a fresh agent: it takes this build's reports along.
                            stash(name: 'sail-reports', includes: 'reports/*.json')
                        }
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
                    message 'Promote the model this build deployed to staging into production?'
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
