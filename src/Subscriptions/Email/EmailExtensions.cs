using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;
using Subscriptions.Infrastructure;

namespace Subscriptions.Email;

internal static class EmailExtensions
{
    /// <summary>The mail sender (SMTP when <c>Smtp:Host</c> is set, the pickup folder otherwise) and its resilience pipeline.</summary>
    public static IServiceCollection AddEmail(this IServiceCollection services) => services.AddFeature("email", services =>
    {
        services.AddSection<SmtpOptions>(SmtpOptions.Section);
        services.AddSection<MailOptions>(MailOptions.Section);
        services.AddSection<DkimOptions>(DkimOptions.Section);
        services.TryAddSingleton(TimeProvider.System);

        services.AddResiliencePipeline(SmtpMailSender.PipelineName, (builder, context) =>
        {
            var smtp = context.ServiceProvider.GetRequiredService<IOptions<SmtpOptions>>().Value;
            // Transient: a 4xx reply, a dropped or refused connection, a timeout, and a 5xx reply that is about the relay
            // or this service's setup rather than the recipient (see SmtpMailSender.IsRecipientsRefusal). A 5xx reply to
            // the recipient or the message is the server's final word on that message: neither retried nor held against
            // the server. So is a connection this service cannot set up (a refused login, an untrusted certificate, STARTTLS or
            // AUTH not offered): the same for every message, it must open the circuit, not use up each delivery's attempts.
            var transient = new PredicateBuilder()
                .Handle<SmtpCommandException>(e => !SmtpMailSender.IsRecipientsRefusal(e))
                .Handle<SmtpProtocolException>()
                .Handle<ServiceNotAuthenticatedException>() // 530 to MAIL FROM, RCPT TO or DATA: authentication or STARTTLS required
                .Handle<AuthenticationException>()
                .Handle<SaslException>()
                .Handle<SslHandshakeException>()
                .Handle<NotSupportedException>()
                .Handle<ServiceNotConnectedException>()
                .Handle<IOException>()
                .Handle<SocketException>()
                .Handle<TimeoutRejectedException>();
            if (smtp.Retries > 0)
            {
                builder.AddRetry(new RetryStrategyOptions
                {
                    ShouldHandle = transient,
                    MaxRetryAttempts = smtp.Retries,
                    Delay = smtp.RetryDelay,
                    BackoffType = DelayBackoffType.Exponential,
                    UseJitter = true,
                    MaxDelay = smtp.LongestRetryDelay, // jitter can draw past it; a send's longest time (claims outlast it) counts on it
                });
            }
            // While the server keeps failing, calls fail at once (BrokenCircuitException) and senders
            // pause instead of hammering it; after BreakDuration one call tries again.
            builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = transient,
                FailureRatio = 0.8,
                MinimumThroughput = 4,
                SamplingDuration = TimeSpan.FromSeconds(30),
                BreakDuration = smtp.BreakDuration,
            });
            // Each attempt (connect if needed, then send one message) gets its own deadline.
            builder.AddTimeout(smtp.Timeout);
        });

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<DkimMessageSigner>();
        services.AddSingleton<MessageIds>();
        services.AddSingleton<ReturnPaths>();
        services.AddSingleton<SmtpMailSender>();
        services.AddSingleton<PickupDirectoryMailSender>();
        services.AddSingleton<IMailSender, ConfiguredMailSender>();
    });
}
