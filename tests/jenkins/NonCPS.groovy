import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy

/** Stands in for Jenkins' @NonCPS (imported by default in pipeline scripts); the harness does not CPS-transform. */
@Retention(RetentionPolicy.RUNTIME)
@interface NonCPS {
}
