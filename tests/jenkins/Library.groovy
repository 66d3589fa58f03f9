import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy

/** Stands in for Jenkins' @Library so a Jenkinsfile compiles here; the harness reads the reference from the source. */
@Retention(RetentionPolicy.SOURCE)
@interface Library {
    String[] value()
}
