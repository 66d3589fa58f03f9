/** Verifies and scores every candidate bundle in the metric container, logging to MLflow (`sail evaluate --container`). */
def call(Map config = [:]) {
    sailSh(config, 'sail evaluate --container', ['verify', 'aws', 'mlflow'])
}
