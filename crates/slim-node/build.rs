fn main() {
    napi_build::setup();
    // buildInfo(): this build's git commit, date and profile, as upstream stamps its own.
    slim_version::build::set_git_sha();
    slim_version::build::set_build_date();
    slim_version::build::set_profile();
    for git in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if std::path::Path::new(git).exists() {
            println!("cargo:rerun-if-changed={git}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
