use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = customers::cli::Cli::parse();
    customers::telemetry::init(cli.log_format);
    match customers::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
